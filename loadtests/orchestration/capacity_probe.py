"""Judging one capacity probe from the windows Locust recorded, and gathering the probes into one run folder.

A probe passes when, over its steady window (warm-up skipped), the gateway answered at least the SLO's success
ratio of everything offered — here a 429 or 503 counts against it, because a rejected arrival is exactly the
load the gateway could not take — the intended-time p99 stays within the SLO, and the generator delivered the
rate asked for. Each is a `runfolder.verdict.Verdict`, merged by the rule that merges a run's.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loadtests.orchestration.capacity_search import Probe
from reports.hdr import decode_sparse, dense, percentiles_ms
from runfolder.layout import RunFolder, read_window_records
from runfolder.outcomes import GOOD, OUTCOME_CLASSES, success_ratio
from runfolder.verdict import ExitCode, Kind, Verdict, merge

REJECTION_CODES = {"RATE_LIMITED", "CHANNEL_BUSY", "REPLICA_UNAVAILABLE", "NO_HEALTHY_REPLICA"}
MIN_OFFERED_SHARE = 0.95  # of the rate asked for: below it the probe did not load the gateway at that rate
MAX_SHORTFALL = 0.01  # late + dropped arrivals, of the offered ones


@dataclass(frozen=True, slots=True)
class Evidence:
    """What one probe's steady window showed, as far as naming its limit goes."""

    offered: float
    rate: float
    shortfall: float  # late + dropped arrivals as a share of the offered ones
    codes: Counter[str]
    counts: Counter[str]
    p99_ms: float | None  # None: no latency was recorded
    generator_valid: bool


def judge_probe(
    windows: list[dict[str, Any]],
    rate: float,
    *,
    warmup_s: float,
    end_s: float,
    min_success: float,
    max_p99_ms: float,
    generator_valid: bool = True,
) -> tuple[Probe, tuple[float, float]]:
    """The probe's verdict over [warmup_s, end_s) of the probe's own time, and that window; the seconds after
    the end only drain in-flight requests and would dilute the offered rate."""
    steady = [w for w in windows if warmup_s <= w["t"] < end_s]
    if not steady:
        return Probe(rate, 0.0, 0.0, 0.0, float("inf"), False, "the generator itself (nothing recorded)"), (0, 0)
    seconds = len(steady)
    offered = sum(int(w.get("offered", 0)) for w in steady) / seconds
    counts: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    indices, values = [], []
    for window in steady:
        codes.update(window.get("codes", {}))
        for name, cls in window.get("classes", {}).items():
            counts[name] += int(cls.get("count", 0))
            if cls.get("intended"):
                index, count = decode_sparse(cls["intended"])
                indices.append(index)
                values.append(count)
    answered = sum(counts[name] for name in GOOD)
    success = success_ratio(counts, of=OUTCOME_CLASSES)
    merged = dense(np.concatenate(indices), np.concatenate(values)) if indices else None
    p99 = percentiles_ms(merged, [99.0])[0] if merged is not None else None
    missed = sum(int(w.get("late", 0)) + int(w.get("dropped", 0)) for w in steady)
    shortfall = missed / max(1.0, offered * seconds)
    passed = merge(probe_verdicts(success, p99, offered, shortfall, rate, min_success, max_p99_ms)) is ExitCode.PASS
    evidence = Evidence(offered, rate, shortfall, codes, counts, p99, generator_valid)
    limited = "" if passed else _limiting_factor(evidence, max_p99_ms)
    span = (float(steady[0]["t"]), float(steady[-1]["t"]) + 1.0)
    return Probe(rate, offered, answered / seconds, success or 0.0, p99 or 0.0, passed, limited), span


def probe_verdicts(
    success: float | None,
    p99_ms: float | None,
    offered: float,
    shortfall: float,
    rate: float,
    min_success: float,
    max_p99_ms: float,
) -> list[Verdict]:
    """The SLOs over the steady window, and the run's checks that the generator offered the rate asked for
    (a probe that did not cannot say what the gateway does at that rate)."""
    return [
        Verdict.bounded(Kind.SLO, "success_ratio", success, min_success, at_least=True),
        Verdict.bounded(Kind.SLO, "p99_ms", p99_ms, max_p99_ms, at_least=False),
        Verdict.bounded(Kind.RUN, "offered_per_s", offered, MIN_OFFERED_SHARE * rate, at_least=True),
        Verdict.bounded(Kind.RUN, "shortfall", shortfall, MAX_SHORTFALL, at_least=False),
    ]


def _limiting_factor(seen: Evidence, max_p99_ms: float) -> str:
    """Name what stopped the probe, the most direct evidence first: a generator short of CPU invalidates
    everything else; a gateway that said no says which cap; a client pool that ran dry means responses (and
    the retries they asked for) came back too slowly to free users."""
    if not seen.generator_valid:
        return "the generator itself (CPU or scheduling lag)"
    rejected = {code: n for code, n in seen.codes.items() if code in REJECTION_CODES}
    if rejected:
        top = max(rejected, key=lambda code: rejected[code])
        return {
            "RATE_LIMITED": "rate cap (429 RATE_LIMITED)",
            "CHANNEL_BUSY": "channel concurrency (503 CHANNEL_BUSY)",
        }.get(top, f"replica availability ({top})")
    if seen.counts["timeout"] or seen.counts["error"]:
        return "errors and timeouts"
    if seen.p99_ms is None:
        return "the generator itself (no latency recorded)"
    if seen.p99_ms > max_p99_ms:
        return f"latency (p99 {seen.p99_ms:.0f} ms > {max_p99_ms:.0f} ms: saturated replica CPU or bank queue)"
    if seen.offered < MIN_OFFERED_SHARE * seen.rate or seen.shortfall > MAX_SHORTFALL:
        return "client pool exhausted (responses too slow to free users)"
    return "success ratio"


def merge_probe(probe_dir: Path, run_dir: Path, offset_s: int, step: int) -> None:
    """Append a probe's windows (shifted onto the capacity run's time axis) and history to the run folder."""
    with RunFolder(run_dir).windows.open("a", encoding="utf-8") as out:
        for window in read_window_records(probe_dir):
            window["t"] = int(window["t"]) + offset_s
            out.write(json.dumps(window, separators=(",", ":")) + "\n")
    history = RunFolder(run_dir).history
    history.mkdir(exist_ok=True)
    for source in sorted(RunFolder(probe_dir).history.glob("*.csv")):
        shutil.copyfile(source, history / f"probe{step:02d}-{source.name}")
