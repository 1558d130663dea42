"""Is the load generator itself the bottleneck? Sampled every second, judged at the end.

A saturated generator sends late and measures its own queueing as the gateway's latency, so such a run must be
marked invalid and said so loudly, never reported as the gateway's result. What makes it invalid is being late
(wake-up lag, late and dropped arrivals), not its CPU: a process at 90-100 % of a core that still sends on time
is a valid run (scripts/bench_generator.py found such probes; the CPU is reported in `cpu_pct_max`).

Locust's own cpu_warning cannot do this job: it samples every 10 s and its first reading is 0, so a two-minute
run barely registers. Here CPU comes from psutil each second (per process, 100 % = one core — a gevent worker
cannot use more), and scheduling lag is how late a greenlet wakes up against its deadline, measured by the
caller (recording/recorder.py) and kept here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import psutil
from hdrh.histogram import HdrHistogram

from loadtests.generator.windows import Window, record_counted
from runfolder.models import GeneratorVerdict

LAG_P99_LIMIT_MS = 50.0
LATE_DROPPED_LIMIT = 0.01  # of offered arrivals


class CpuSampler:
    """CPU % of one process since the previous call; primed at construction so the first sample is real."""

    def __init__(self, pid: int | None = None) -> None:
        self._process = psutil.Process(pid)
        self._process.cpu_percent(None)

    def sample(self) -> float:
        return float(self._process.cpu_percent(None))


LAG_HIGHEST_US = 60_000_000


def new_lag_histogram() -> HdrHistogram:
    """Wake-up lateness in microseconds, up to a minute, 2 significant digits (a verdict, not a report)."""
    return HdrHistogram(1, LAG_HIGHEST_US, 2)


@dataclass
class LagMeter:
    """Wake-up lateness samples (ms): each second's worst for the windows, and every sample for the verdict.

    The verdict uses the p99 over all samples, not over per-second maxima: one OS hiccup in a short run is not
    a saturated generator, while lag that persists moves the p99 of thousands of wake-ups.
    """

    current_max: float = 0.0
    histogram: HdrHistogram = field(default_factory=new_lag_histogram)
    pending_us: list[int] = field(default_factory=list)  # recorded once a second (windows.record_counted)

    def record(self, lag_ms: float) -> None:
        if lag_ms > self.current_max:
            self.current_max = lag_ms
        self.pending_us.append(int(lag_ms * 1000 + 0.5))

    @property
    def samples(self) -> HdrHistogram:
        record_counted(self.histogram, self.pending_us, LAG_HIGHEST_US)
        return self.histogram

    def take_max(self) -> float:
        record_counted(self.histogram, self.pending_us, LAG_HIGHEST_US)
        worst, self.current_max = self.current_max, 0.0
        return worst


def assess_generator(
    windows: Iterable[Window],
    expected_offered: float,
    lag: HdrHistogram,
    *,
    started_unix: float | None = None,
    stopped: bool = False,
) -> GeneratorVerdict:
    """The generator's verdict from merged windows (their `gen` part holds each second's worst worker).

    `expected_offered` is the rate curve's integral; offering far fewer arrivals (beyond Poisson noise) means
    a generator process never started or stopped early, whatever its CPU said. `lag` holds every wake-up
    lateness sample of every process (LagMeter.samples, merged). A run `stopped` early passes the integral up
    to the stop, and a stop before the first health sample is the user's doing, not a silent generator.
    """
    ordered = sorted(windows, key=lambda window: window.t)
    offered = sum(w.offered for w in ordered)
    late = sum(w.late for w in ordered)
    dropped = sum(w.dropped for w in ordered)
    starved = sum(w.starved for w in ordered)
    sampled = [w for w in ordered if w.workers > 0]
    cpu_max = max((w.cpu_pct for w in sampled), default=0.0)
    lag_p99 = lag.get_value_at_percentile(99.0) / 1000.0 if lag.get_total_count() else 0.0
    reasons: list[str] = []
    if not sampled and not stopped:
        reasons.append("no generator process reported its health")
    shortfall = expected_offered - offered
    if shortfall > 5.0 * math.sqrt(expected_offered) + 0.01 * expected_offered + 1.0:
        reasons.append(f"only {offered} arrivals offered of about {expected_offered:.0f} scheduled")
    if lag_p99 > LAG_P99_LIMIT_MS:
        reasons.append(f"generator scheduling lag p99 {lag_p99:.0f} ms > {LAG_P99_LIMIT_MS:.0f} ms")
    generator_reasons = len(reasons)
    pool_ran_out = False
    if offered and (late + dropped) / offered > LATE_DROPPED_LIMIT:
        share = 100.0 * (late + dropped) / offered
        missed = f"{late} late + {dropped} dropped arrivals = {share:.1f}% of {offered} offered"
        limit = f"(> {100 * LATE_DROPPED_LIMIT:.0f}%)"
        if 2 * starved >= late + dropped:
            pool_ran_out = True
            reasons.append(
                f"{missed} {limit}: {starved} of them found every user busy when they fell due — the scenario's "
                f"user pool ([arrivals] pool) ran out, its limit and not the generator's; raise [arrivals] pool"
            )
        else:
            reasons.append(f"{missed} {limit}: the generator could not keep up")
    limited_by: Literal["generator", "pool"] | None = None
    if reasons:
        limited_by = "pool" if pool_ran_out and not generator_reasons else "generator"
    return GeneratorVerdict(
        valid=not reasons,
        reasons=reasons,
        limited_by=limited_by,
        starved=starved,
        cpu_pct_max=round(cpu_max, 1),
        lag_ms_p99=round(lag_p99, 2),
        late=late,
        dropped=dropped,
        started_unix=started_unix,
    )
