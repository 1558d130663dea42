"""The knee search of `surge find-capacity`, as pure logic over a probe function.

Step the offered rate up geometrically until a probe misses the SLOs, bisect between the last good and the
first bad rate until the bracket is within `precision`, then repeat the best good rate to show the spread.
Kept free of I/O so that it is tested on simulated response curves; the probe that really drives Locust lives
in cmd_capacity.py.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Probe:
    """One short steady window at a fixed arrival rate and what it showed."""

    rate_per_s: float
    offered: float
    goodput: float
    success_ratio: float
    p99_ms: float
    passed: bool
    limited_by: str = ""


@dataclass
class SearchResult:
    max_rate_per_s: float
    spread: float  # (max - min) / median goodput over the repetitions of the best rate
    limited_by: str
    probes: list[Probe] = field(default_factory=list)
    bracket: tuple[float, float] | None = None


def find_knee(
    probe: Callable[[float], Probe],
    *,
    start_rate: float,
    max_rate: float,
    growth: float = 1.5,
    precision: float = 0.05,
    repeats: int = 2,
    max_probes: int = 30,
    min_rate: float = 1.0,
) -> SearchResult:
    """Search the highest rate whose probe passes; at most `max_probes + repeats` probes, whatever the curve,
    and no bisection below `min_rate` (a gateway failing at 1/s has no capacity worth bracketing)."""
    if start_rate <= 0 or max_rate < start_rate or growth <= 1 or not 0 < precision < 1:
        raise ValueError("need 0 < start_rate <= max_rate, growth > 1 and 0 < precision < 1")
    probes: list[Probe] = []

    def run(rate: float) -> Probe:
        result = probe(rate)
        probes.append(result)
        return result

    good: Probe | None = None
    bad: Probe | None = None
    rate = start_rate
    while len(probes) < max_probes:
        result = run(rate)
        if not result.passed:
            bad = result
            break
        good = result
        if rate >= max_rate:
            break
        rate = min(rate * growth, max_rate)
    if bad is None:
        top = good.rate_per_s if good else start_rate
        return SearchResult(top, 0.0, "the search ceiling (--max-rate)", probes, None)

    low = good.rate_per_s if good else 0.0
    high = bad.rate_per_s
    while (high - low) / high > precision and high > min_rate and len(probes) < max_probes:
        middle = (low + high) / 2
        result = run(middle)
        if result.passed:
            low, good = middle, result
        else:
            high, bad = middle, result
    if good is None:
        return SearchResult(0.0, 0.0, bad.limited_by or "unknown", probes, (low, high))

    repeated = [good] + [run(good.rate_per_s) for _ in range(repeats)]
    goodputs = [p.goodput for p in repeated]
    median = statistics.median(goodputs)
    spread = (max(goodputs) - min(goodputs)) / median if median > 0 else 0.0
    return SearchResult(good.rate_per_s, spread, bad.limited_by or "unknown", probes, (low, high))
