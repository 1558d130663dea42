"""Judging a probe from recorded windows: rejections count against it, the warm-up does not, p99 from HDR."""

from __future__ import annotations

from typing import Any

from loadtests.orchestration.capacity_probe import judge_probe, probe_verdicts
from reports.hdr import new_histogram
from runfolder.verdict import ExitCode, Kind, State, merge


def window(t: int, offered: int, ok: int, limited: int = 0, latency_us: int = 10_000) -> dict[str, Any]:
    def cls(count: int) -> dict[str, Any]:
        hist = new_histogram()
        if count:
            hist.record_value(latency_us, count)
        return {"count": count, "intended": hist.encode().decode(), "service": hist.encode().decode()}

    classes = {"succeeded": cls(ok)}
    codes = {}
    if limited:
        classes["rate_limited"] = cls(limited)
        codes["RATE_LIMITED"] = limited
    return {
        "t": t,
        "offered": offered,
        "sent": offered,
        "late": 0,
        "dropped": 0,
        "classes": classes,
        "codes": codes,
    }


def test_passing_probe_ignores_the_warmup() -> None:
    windows = [window(0, 50, 10, latency_us=5_000_000)] + [window(t, 100, 100) for t in range(1, 6)]
    windows.append(window(6, 0, 3))  # the drain after the end does not count
    probe, span = judge_probe(windows, 100, warmup_s=1, end_s=6, min_success=0.99, max_p99_ms=800)
    assert probe.passed
    assert probe.goodput == 100
    assert 9.9 <= probe.p99_ms <= 10.1
    assert span == (1.0, 6.0)


def test_rate_limited_probe_fails_and_names_the_cap() -> None:
    windows = [window(t, 400, 300, limited=100) for t in range(0, 6)]
    probe, _ = judge_probe(windows, 400, warmup_s=1, end_s=6, min_success=0.99, max_p99_ms=800)
    assert not probe.passed
    assert probe.success_ratio == 0.75
    assert "rate cap" in probe.limited_by


def test_slow_probe_fails_on_latency() -> None:
    windows = [window(t, 100, 100, latency_us=2_000_000) for t in range(0, 6)]
    probe, _ = judge_probe(windows, 100, warmup_s=1, end_s=6, min_success=0.99, max_p99_ms=800)
    assert not probe.passed
    assert probe.limited_by.startswith("latency")


def test_offered_shortfall_is_the_client_pool() -> None:
    windows = [window(t, 60, 60) for t in range(0, 6)]
    probe, _ = judge_probe(windows, 100, warmup_s=1, end_s=6, min_success=0.99, max_p99_ms=800)
    assert not probe.passed
    assert "client pool" in probe.limited_by


def test_an_invalid_generator_is_blamed_first() -> None:
    windows = [window(t, 400, 300, limited=100) for t in range(0, 6)]
    probe, _ = judge_probe(windows, 400, warmup_s=1, end_s=6, min_success=0.99, max_p99_ms=800, generator_valid=False)
    assert "generator" in probe.limited_by


def test_a_probe_is_judged_by_the_verdicts_and_the_merge_of_a_run() -> None:
    verdicts = probe_verdicts(0.995, 120.0, 97.0, 0.002, 100.0, min_success=0.99, max_p99_ms=800)
    assert [(v.kind, v.name, v.state) for v in verdicts] == [
        (Kind.SLO, "success_ratio", State.PASS),
        (Kind.SLO, "p99_ms", State.PASS),
        (Kind.RUN, "offered_per_s", State.PASS),
        (Kind.RUN, "shortfall", State.PASS),
    ]
    short = probe_verdicts(0.995, 120.0, 94.0, 0.002, 100.0, min_success=0.99, max_p99_ms=800)
    assert merge(short) is ExitCode.HARNESS  # the generator did not offer the rate: no claim on the gateway
    late = probe_verdicts(0.995, 120.0, 97.0, 0.011, 100.0, min_success=0.99, max_p99_ms=800)
    assert [v.name for v in late if v.state is State.FAIL] == ["shortfall"]


def test_answers_without_a_latency_recorded_are_not_a_pass() -> None:
    windows = [window(t, 100, 100) for t in range(0, 6)]
    for w in windows:
        del w["classes"]["succeeded"]["intended"]
    probe, _ = judge_probe(windows, 100, warmup_s=1, end_s=6, min_success=0.99, max_p99_ms=800)
    assert probe.success_ratio == 1.0 and not probe.passed
    assert "no latency recorded" in probe.limited_by
