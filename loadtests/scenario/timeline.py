"""A rate curve's shape, computed: its corners, the rate at any second, its spikes and its named phases.

Pure functions of (at_s, per_s) points and corners, so the maths is tested without a scenario file and shared
by the rate curve and a replayed trace (whose corners are a step per second). A spike is a rise of at least
`SPIKE_FACTOR` within `SPIKE_WITHIN_S` (docs/internals.md); the recovery SLO and per-phase SLOs read these.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

SPIKE_FACTOR = 5.0  # a rise of at least 5x ...
SPIKE_WITHIN_S = 5.0  # ... within 5 s is a spike

Corner = tuple[float, float]  # (t_s, per_s)


def curve_rate(points: Sequence[Corner], t_s: float) -> float:
    """The rate at `t_s` of the curve through `points`: linear between them, flat outside them."""
    if t_s <= points[0][0]:
        return points[0][1]
    for (t0, r0), (t1, r1) in itertools.pairwise(points):
        if t_s <= t1:
            span = t1 - t0
            if span == 0:
                return r1
            return r0 + (r1 - r0) * (t_s - t0) / span
    return points[-1][1]


def breakpoints(points: Sequence[Corner], duration_s: float) -> list[Corner]:
    """The curve as corners on [0, duration_s]: what the arrival schedule integrates."""
    corners = [(0.0, points[0][1])]
    corners += [(t, r) for t, r in points if 0 < t < duration_s]
    end = duration_s - 1e-9
    corners.append((duration_s, curve_rate(points, end) if end >= 0 else 0.0))
    return corners


def spikes(corners: Sequence[Corner], duration_s: float) -> list[tuple[float, float]]:
    """(start_s, end_s) of every rise of >= 5x within 5 s; a spike ends when the rate falls below half its peak.

    A ramp up from zero is a warm-up, not a spike. The end matters to the recovery SLO ("back to normal
    after each spike"), so it is when the load has mostly gone, not when it stops rising; a spike that
    never falls lasts to the end of the run.
    """
    found: list[tuple[float, float]] = []
    i = 0
    while i < len(corners):
        start_t, base = corners[i]
        rise = next(
            (
                j
                for j in range(i + 1, len(corners))
                if corners[j][0] - start_t <= SPIKE_WITHIN_S and base > 0 and corners[j][1] >= SPIKE_FACTOR * base
            ),
            None,
        )
        if rise is None:
            i += 1
            continue
        peak = corners[rise][1]
        end_t = duration_s
        k = rise + 1
        while k < len(corners):
            peak = max(peak, corners[k][1])
            if corners[k][1] < peak / 2:
                end_t = _crossing(corners[k - 1], corners[k], peak / 2)
                break
            k += 1
        found.append((start_t, end_t))
        i = k
    return found


def _crossing(before: Corner, after: Corner, level: float) -> float:
    (t0, r0), (t1, r1) = before, after
    if r0 == r1:
        return t1
    return t0 + (t1 - t0) * (r0 - level) / (r0 - r1)


def phases(corners: Sequence[Corner], spike_spans: Sequence[tuple[float, float]]) -> list[tuple[str, float, float]]:
    """Named stretches of the curve for per-phase SLOs: `steady-N`, `rise-N`, `fall-N` and `spike-N`.

    Consecutive segments of the same direction form one phase (steady ones only at the same level, so each
    step of capacity-step is its own phase); a spike window overrides whatever it covers.
    """
    spans: list[tuple[str, float, float]] = []
    levels: list[float] = []  # the rate each span ends at: two steady spans merge only at the same level
    for (t0, r0), (t1, r1) in itertools.pairwise(corners):
        if t1 <= t0:
            continue
        kind = "steady" if math.isclose(r0, r1, rel_tol=1e-9) else ("rise" if r1 > r0 else "fall")
        if spans and spans[-1][0] == kind and (kind != "steady" or math.isclose(levels[-1], r0)):
            spans[-1] = (kind, spans[-1][1], t1)
            levels[-1] = r1
        else:
            spans.append((kind, t0, t1))
            levels.append(r1)
    for start, end in spike_spans:
        clipped: list[tuple[str, float, float]] = []
        for kind, s, e in spans:
            if s < start:
                clipped.append((kind, s, min(e, start)))
            if e > end:
                clipped.append((kind, max(s, end), e))
        clipped.append(("spike", start, end))
        spans = sorted(clipped, key=lambda span: span[1])
    counts: dict[str, int] = {}
    named: list[tuple[str, float, float]] = []
    for kind, s, e in spans:
        if e - s <= 1e-9:
            continue
        counts[kind] = counts.get(kind, 0) + 1
        named.append((f"{kind}-{counts[kind]}", s, e))
    return named
