"""The generator's verdict: CPU, lag, late+dropped and a shortfall of arrivals each make a run invalid."""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

from loadtests.generator.health import CpuSampler, LagMeter, assess_generator
from loadtests.generator.windows import Window


def lags(*ms: float) -> HdrHistogram:
    meter = LagMeter()
    for value in ms:
        meter.record(value)
    return meter.samples


CALM = lags(*([1.0] * 1000))


def seconds(n: int, *, cpu: float = 20.0, lag: float = 1.0, offered: int = 100) -> list[Window]:
    return [Window(t, offered=offered, sent=offered, cpu_pct=cpu, lag_ms=lag, workers=1) for t in range(n)]


def test_a_healthy_run_is_valid() -> None:
    verdict = assess_generator(seconds(10), 1000, CALM)
    assert verdict.valid and verdict.reasons == []
    assert verdict.model_dump(mode="json")["cpu_pct_max"] == 20.0


def test_a_generator_at_full_cpu_that_sends_on_time_is_valid() -> None:
    """The generator benchmark found probes at >= 90 % CPU for 3+ s whose arrivals all went out on time; only
    lateness (lag, late, dropped) makes a run invalid, and the CPU is still reported."""
    windows = seconds(10, cpu=97.0)
    verdict = assess_generator(windows, 1000, CALM)
    assert verdict.valid and verdict.reasons == []
    assert verdict.cpu_pct_max == 97.0


def test_scheduling_lag_p99_over_all_wake_ups_decides_not_one_hiccup() -> None:
    hiccup = lags(*([1.0] * 995), *([400.0] * 5))
    assert assess_generator(seconds(10), 1000, hiccup).valid
    persistent = lags(*([1.0] * 970), *([400.0] * 30))
    verdict = assess_generator(seconds(10), 1000, persistent)
    assert not verdict.valid and "lag" in verdict.reasons[0]
    assert abs(verdict.lag_ms_p99 - 400) <= 4


def test_late_and_dropped_over_one_percent_is_invalid() -> None:
    windows = seconds(10)
    windows[0].late, windows[1].dropped = 6, 6
    verdict = assess_generator(windows, 1000, CALM)
    assert not verdict.valid and (verdict.late, verdict.dropped) == (6, 6)
    windows[1].dropped = 4
    assert assess_generator(windows, 1000, CALM).valid


def test_a_generator_that_never_ran_is_invalid() -> None:
    verdict = assess_generator([Window(t) for t in range(5)], 500, lags())
    assert not verdict.valid
    assert any("no generator" in r for r in verdict.reasons)
    assert any("only 0 arrivals" in r for r in verdict.reasons)


def test_lag_meter_keeps_each_seconds_worst_and_cpu_sampler_reads_this_process() -> None:
    meter = LagMeter()
    for lag in (1.0, 7.0, 3.0):
        meter.record(lag)
    assert meter.take_max() == 7.0 and meter.take_max() == 0.0
    assert meter.samples.get_total_count() == 3 and abs(meter.samples.get_max_value() - 7000) <= 70
    sampler = CpuSampler()
    sum(i * i for i in range(300_000))
    assert sampler.sample() > 0.0


def test_late_arrivals_that_found_every_user_busy_blame_the_pool_not_the_generator() -> None:
    """The built-in study's 'paced bank quotas' was invalid with 48 late arrivals at 8 % CPU and lag p99 3.5 ms:
    the scenario's user pool ran out. That is said as such, apart from a generator that could not keep up."""
    windows = seconds(10)
    windows[2].late, windows[2].starved = 40, 38
    verdict = assess_generator(windows, 1000, CALM)
    assert not verdict.valid and verdict.limited_by == "pool" and verdict.starved == 38
    assert "user pool ([arrivals] pool) ran out" in verdict.reasons[0] and "not the generator's" in verdict.reasons[0]
    assert verdict.bottleneck.startswith("the scenario's user pool ran out")
    windows[2].starved = 5  # most were taken in time and begun late: the generator's own lag
    verdict = assess_generator(windows, 1000, CALM)
    assert verdict.limited_by == "generator" and "generator could not keep up" in verdict.reasons[0]
    assert verdict.bottleneck == "the load generator was the bottleneck"
    windows[2].starved = 38
    verdict = assess_generator(windows, 1000, lags(*([400.0] * 100)))  # and lagging too: the generator's
    assert verdict.limited_by == "generator"
    assert assess_generator(seconds(10), 1000, CALM).limited_by is None
