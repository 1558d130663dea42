"""summary.json and timeseries.csv: a measured and judged run (`reports.analysis.Analysis`) formatted, never
measured or judged again, so they cannot disagree with junit.xml or report.html.

summary.json is `runfolder.models.Summary`: docs/internals.md §5 fields first, then what the report and
`surge compare` read (§10).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from reports import judge
from reports.analysis import Analysis
from runfolder.figures import Figures
from runfolder.models import Summary
from runfolder.outcomes import GOOD, OUTCOME_CLASSES
from runfolder.verdict import Kind, State


def summary(analysis: Analysis) -> Summary:
    """summary.json: docs/internals.md §5 fields first, then what the report and `surge compare` read."""
    frames, meta = analysis.frames, analysis.frames.meta
    report = analysis.invariants
    stop = frames.stop
    fields: dict[str, Any] = {
        "scenario": meta.scenario,
        "description": meta.description,
        "seed": meta.seed,
        "scale": meta.scale,
        "duration_s": meta.duration_s,
        "started_unix": meta.started_unix,
        "valid": analysis.valid,
        "validity_reasons": (
            [] if frames.generator is None or analysis.not_started else list(frames.generator.reasons)
        ),
        "invalid_because": analysis.invalid_because,
        "exit_code": analysis.exit_code,
        "interrupted": stop is not None and stop.aborted is None,
        "stopped": None if stop is None else stop.stopped,
        "aborted": None if stop is None else stop.aborted,
        "not_started": analysis.not_started,
        "unmatched_answers": None
        if analysis.unmatched is None
        else {
            "count": analysis.unmatched.count,
            "answered_2xx": analysis.unmatched.answered_2xx,
            "line": analysis.unmatched.line,
            "sample": analysis.unmatched.sample,
        },
        "totals": analysis.totals,
        "slos": analysis.of(Kind.SLO),
        "invariants": _invariant_counts(analysis),
        "invariant_verdicts": analysis.of(Kind.INVARIANT),
        "run_verdicts": analysis.of(Kind.RUN),
        "unknown": [verdict.name for verdict in analysis.verdicts if verdict.state is State.UNKNOWN],
        "invariant_outcomes": None if report is None else report.outcomes,
        "ledger_other_rows": None if report is None else report.other_rows,
        "invariant_examples": None if report is None else {k: v[:20] for k, v in report.violations.items()},
        "recovery": analysis.recovery,
        "success_ratio": analysis.success_ratio,
        "latency_ms": analysis.latency_ms,
        "throughput_per_s": analysis.throughput_per_s,
        "codes": analysis.codes,
        "amount_repaid_fen": analysis.amount_repaid_fen,
        "plans_followed": analysis.plans_followed,
        "memory": analysis.memory,
        "capacity": analysis.capacity,
        "versions": meta.versions,
        "git_commit": meta.git_commit,
        "slo_thresholds": {
            "min_success_ratio": analysis.slo.min_success_ratio,
            "max_p99_ms": analysis.slo.max_p99_ms,
            "max_recovery_s": analysis.slo.max_recovery_s,
            "max_lost": analysis.slo.max_lost,
            "max_over_cap": analysis.slo.max_over_cap,
        },
    }
    section = analysis.settlement
    if section is not None:  # a synchronous run's summary.json stays what it was before settlement existed
        for key in ("max_settle_p99_s", "max_stuck", "max_flipped"):
            fields["slo_thresholds"][key] = getattr(analysis.slo, key)
        fields["settlement"] = section
    return Summary.model_validate(fields)


def _invariant_counts(analysis: Analysis) -> dict[str, int | None]:
    if judge.incomplete_history(analysis.frames.generator) is not None:  # counted over part of the history: unknown
        return {v.name: None if v.value is None else int(v.value) for v in analysis.of(Kind.INVARIANT)}
    if analysis.invariants is not None:
        return dict(analysis.invariants.counts())
    return {verdict.name: None for verdict in analysis.of(Kind.INVARIANT)}


def timeseries(analysis: Analysis) -> pd.DataFrame:
    """timeseries.csv: one row per second — counters, each problem code, latency, amount repaid."""
    windows = analysis.frames.windows
    frame = pd.DataFrame({"t_s": windows.index, "offered": windows["offered"], "sent": windows["sent"]})
    for cls in OUTCOME_CLASSES:
        frame[cls] = windows[f"n_{cls}"]
    frame["late"] = windows["late"]
    frame["dropped"] = windows["dropped"]
    for code in analysis.frames.codes.columns:
        frame[str(code)] = analysis.frames.codes[code]
    for column in analysis.latency_intended.columns:
        frame[column] = analysis.latency_intended[column].round(3)
        frame[f"service_{column}"] = analysis.latency_service[column].round(3)
    frame["amount_fen"] = windows["amount_fen"]
    frame["plans_followed"] = windows["plans_followed"]
    frame["healthy"] = analysis.healthy.astype(int)
    return frame.reset_index(drop=True)


def figures(analysis: Analysis, measured: Summary, seconds: pd.DataFrame) -> Figures:
    """The run just measured as a comparison reads it, from its summary and its seconds (`summary`, `timeseries`):
    the same figures `runfolder.figures.read_figures` reads back once they are written."""
    rows = seconds[["offered", *GOOD]].to_dict("records")
    return Figures.of(analysis.frames.run_dir, analysis.frames.meta, measured, rows)
