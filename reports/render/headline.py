"""The strip of figures above the verdict table: the answer at a glance, before any table or chart.

How much load came, how much got through, what was refused and why, how slow, how fast the worst recovery, and
whether the money held. Each figure that a verdict covers takes its colour from that verdict's state (judged once,
in `reports.judge`); this module measures nothing against a bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from reports.analysis import Analysis
from reports.measure import counters
from reports.render.shared import percent
from runfolder.outcomes import GOOD, OUTCOME_CLASSES
from runfolder.verdict import Kind, State, worst


@dataclass(frozen=True, slots=True)
class Headline:
    """One figure of the strip above the verdict table; `state` (pass / fail / unknown / "") colours it."""

    key: str
    label: str
    value: str
    state: str = ""


TOP_CODES = 3


def headline(analysis: Analysis) -> list[Headline]:
    """The answer at a glance: how much load came, how much got through, what was refused and why,
    how slow, how fast the worst recovery, whether the money held — before any table or chart."""
    windows = analysis.frames.windows
    good = counters.class_sum(windows, GOOD)
    completed = int(counters.class_sum(windows, OUTCOME_CLASSES).sum())
    codes = analysis.codes
    top = list(codes.items())[:TOP_CODES]
    shares = [f"{code} {percent(count / completed)}" for code, count in top] if completed else []
    if len(codes) > TOP_CODES:
        shares.append(f"{len(codes) - TOP_CODES} more")
    p99 = analysis.latency_ms["intended"]["p99_ms"]
    p99_state = "".join(verdict.state for verdict in analysis.of(Kind.SLO) if verdict.name == "p99_ms")
    return [
        Headline("offered", "peak offered", f"{_peak(windows['offered'])}/s"),
        Headline("goodput", "peak goodput", f"{_peak(good)}/s"),
        Headline("rejected", "declined or refused, by code", ", ".join(shares) or "none"),
        Headline("p99", "p99 (intended time)", "—" if p99 is None else f"{p99:,.0f} ms", p99_state),
        _worst_recovery(analysis),
        _invariants_headline(analysis),
    ]


def _peak(series: pd.Series) -> str:
    return f"{int(series.max()):,}" if not series.empty else "0"


def _worst_recovery(analysis: Analysis) -> Headline:
    """The slowest recovery measured, coloured by the recovery verdicts (the worst of them)."""
    played = [entry for entry in analysis.recovery if entry.get("played", True)]
    unplayed = len(analysis.recovery) - len(played)
    note = f" ({unplayed} not played)" if unplayed else ""
    state = worst(verdict.state for verdict in analysis.of(Kind.SLO) if verdict.name.startswith("recovery_s["))
    if analysis.not_started:
        return Headline("recovery", "worst recovery", "unknown (not started)", State.UNKNOWN)
    if not analysis.recovery:
        return Headline("recovery", "worst recovery", "no faults or spikes")
    if not played:
        return Headline("recovery", "worst recovery", f"unknown{note}", state)
    if any(entry["recover_s"] is None for entry in played):
        return Headline("recovery", "worst recovery", f"not recovered{note}", state)
    slowest = max(float(entry["recover_s"]) for entry in played)
    return Headline("recovery", "worst recovery", f"{slowest:.1f} s{note}", state)


def _invariants_headline(analysis: Analysis) -> Headline:
    verdicts = analysis.of(Kind.INVARIANT)
    outcomes = [verdict.state for verdict in verdicts]
    failed = [verdict.name for verdict in verdicts if verdict.state is State.FAIL]
    if failed:
        return Headline("invariants", "money invariants", f"FAILED: {', '.join(failed)}", "fail")
    unknown = outcomes.count(State.UNKNOWN)
    if unknown == len(outcomes):
        return Headline("invariants", "money invariants", "unknown (not checked)", "unknown")
    if unknown:
        return Headline(
            "invariants", "money invariants", f"{len(outcomes) - unknown} held, {unknown} unknown", "unknown"
        )
    return Headline("invariants", "money invariants", f"all {len(outcomes)} held", "pass")
