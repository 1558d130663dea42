"""The open model's clock: a piecewise-linear rate curve → the intended send time of every arrival.

Arrivals are found by inverting the cumulative rate Λ(t) = ∫ rate: the k-th arrival is where Λ crosses the k-th
mark. Even spacing puts the marks at k + ½; a non-homogeneous Poisson process puts them at a running sum of
Exp(1) draws (time-rescaling theorem), so both are exact at any rate curve and cost O(1) per arrival.

With N generator processes, process i keeps every N-th even mark (i, i+N, ...) or draws a Poisson process of
rate/N with its own seed: the union over processes is then the same even schedule, or again Poisson at the full
rate. Nothing here imports Locust or sleeps; driver.Generator only walks this iterator.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

Process = Literal["poisson", "even"]


@dataclass(frozen=True, slots=True)
class _Segment:
    start: float
    end: float
    rate0: float
    slope: float
    area_before: float  # Λ at `start`

    @property
    def area(self) -> float:
        span = self.end - self.start
        return self.rate0 * span + 0.5 * self.slope * span * span

    def time_at(self, area: float) -> float:
        """The t in this segment where Λ(t) = `area`: the stable root of ½·m·x² + r0·x = d."""
        d = area - self.area_before
        if d <= 0:
            return self.start
        disc = self.rate0 * self.rate0 + 2.0 * self.slope * d
        x = 2.0 * d / (self.rate0 + math.sqrt(max(disc, 0.0)))
        return min(self.start + x, self.end)


class RateCurve:
    """Λ(t) and its inverse for corners (t_s, per_s) on [0, end], linear between corners."""

    def __init__(self, corners: Sequence[tuple[float, float]]) -> None:
        if len(corners) < 2:
            raise ValueError(f"a rate curve needs at least 2 corners (got {len(corners)})")
        segments: list[_Segment] = []
        area = 0.0
        for (t0, r0), (t1, r1) in itertools.pairwise(corners):
            if t1 < t0 or r0 < 0 or r1 < 0:
                raise ValueError(f"corners must have rising times and rates >= 0 (got {(t0, r0)}, {(t1, r1)})")
            if t1 == t0:
                continue
            segment = _Segment(t0, t1, r0, (r1 - r0) / (t1 - t0), area)
            segments.append(segment)
            area += segment.area
        self.segments = segments
        self.total = area

    def cumulative(self, t_s: float) -> float:
        """Λ(t): arrivals expected in [0, t)."""
        for segment in self.segments:
            if t_s < segment.end:
                x = max(0.0, t_s - segment.start)
                return segment.area_before + segment.rate0 * x + 0.5 * segment.slope * x * x
        return self.total


def arrival_times(
    curve: RateCurve,
    process: Process,
    *,
    seed: int = 0,
    worker_index: int = 0,
    worker_count: int = 1,
) -> Iterator[float]:
    """Intended send times (seconds from t=0, rising) of this worker's share of the arrivals."""
    if not 0 <= worker_index < worker_count:
        raise ValueError(f"worker_index must be in [0, {worker_count}) (got {worker_index})")
    segments = curve.segments
    i = 0
    for mark in _marks(curve.total, process, seed, worker_index, worker_count):
        while mark > segments[i].area_before + segments[i].area and i < len(segments) - 1:
            i += 1  # marks only grow, so the segment search never goes back
        yield segments[i].time_at(mark)


def _marks(total: float, process: Process, seed: int, worker_index: int, worker_count: int) -> Iterator[float]:
    if process == "even":
        mark = worker_index + 0.5
        while mark < total:
            yield mark
            mark += worker_count
        return
    rng = random.Random(f"{seed}/arrivals/{worker_index}")
    mark = rng.expovariate(1.0) * worker_count
    while mark < total:
        yield mark
        mark += rng.expovariate(1.0) * worker_count
