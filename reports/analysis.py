"""Everything the outputs need, computed once from a run's frames: measured, then judged once (`reports.judge`).

`finalize`, `render` and `compare` all start from an `Analysis` (the gather step, Locust's `html.py` way), so the
numbers in summary.json, junit.xml, timeseries.csv and the HTML cannot disagree and no output judges again.

A capacity search (internals §6) is judged by one check, `capacity_found`, plus the invariants: its overload
probes fail the scenario SLOs on purpose. Without a ledger copy the invariants are unknown (counts `null`). A run
stopped early is measured on the seconds that ran (the frames end at the stop, and faults or spikes planned after
it are no incidents); one stopped before its first arrival (`not_started`) measured nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from reports import hdr, judge, memory, settlement
from reports.frames import RunFrames
from reports.invariants.check import InvariantReport, check
from reports.invariants.daily_caps import DailyTotals
from reports.measure import caps, counters, latency, recovery
from runfolder.events import FAULT_FAILED, FAULT_INJECTED
from runfolder.models import Slo, Summary
from runfolder.outcomes import GOOD, OUTCOME_CLASSES, TOKEN_EXPIRED
from runfolder.verdict import GENERATOR_BOTTLENECK, Kind, State, Verdict


@dataclass(frozen=True, slots=True)
class Analysis:
    """One run, measured and judged; per-second latency frames share `frames.windows`' index."""

    frames: RunFrames
    slo: Slo
    totals: dict[str, int]
    latency_intended: pd.DataFrame
    latency_service: pd.DataFrame
    overall_intended: hdr.IntArray
    overall_service: hdr.IntArray
    healthy: pd.Series
    recovery: list[dict[str, Any]]
    invariants: InvariantReport | None
    daily: DailyTotals
    verdicts: list[Verdict]
    capacity: dict[str, Any] | None
    exit_code: int
    unmatched: counters.UnmatchedAnswers | None = None

    @property
    def valid(self) -> bool:
        """The generator was not found to be the bottleneck (a run that never started was not invalid)."""
        return all(verdict.passed is not False for verdict in self.of(Kind.RUN) if verdict.name == "generator_valid")

    @property
    def not_started(self) -> bool:
        return not_started(self.frames)

    @property
    def invalid_because(self) -> str | None:
        """Why the run is invalid, in words for a banner (None when valid): the generator, or the scenario's pool."""
        if self.valid:
            return None
        generator = self.frames.generator
        return GENERATOR_BOTTLENECK if generator is None else generator.bottleneck

    def of(self, kind: Kind) -> list[Verdict]:
        return [verdict for verdict in self.verdicts if verdict.kind is kind]


def analyse(frames: RunFrames) -> Analysis:
    """Measure the run once, then judge it once (`reports.judge`)."""
    thresholds = frames.meta.slo
    seconds = frames.windows.index
    intended = latency.latency_per_second(frames.latency, seconds, "intended")
    service = latency.latency_per_second(frames.latency, seconds, "service")
    refused = counters.credential_codes(frames.codes)
    attempts = int(counters.class_sum(frames.windows, OUTCOME_CLASSES).sum())
    # a 401 to an expired token was refreshed and re-sent: counted apart, but the credentials held
    failed = {code: count for code, count in refused.items() if code != TOKEN_EXPIRED}
    judged = frames  # the SLOs judge the service: attempts that failed on credentials are reported apart
    if refused:
        judged = replace(frames, windows=counters.without_credential_failures(frames.windows, frames.codes))
    healthy = recovery.healthy_seconds(judged.windows, intended["p99_ms"], thresholds)
    capacity = _capacity(frames)
    recoveries: list[dict[str, Any]] = []
    if not frames.is_capacity_search:
        ran_until = frames.stop.at_s if frames.stop is not None else float("inf")
        found = [i for i in recovery.incidents(frames.meta, frames.events) if i.start_s < ran_until]
        recoveries = _settlement_recovery(frames, recovery.recovery(judged, healthy, found, thresholds))
    card_caps, user_cap = caps.caps(frames.meta)
    daily = caps.charges_per_day(frames)
    report, crashed = _check_invariants(frames, card_caps, user_cap, daily)
    accepted = settlement.accepted_payments(frames.history)
    settle_seconds = settlement.time_to_final_s(accepted)
    unmatched = counters.unmatched_answers(frames)
    findings = judge.Findings(
        slo=thresholds,
        spans=[] if frames.is_capacity_search else spans(judged),
        recovery=recoveries,
        capacity_search=frames.is_capacity_search,
        capacity_rate=None
        if capacity is None or capacity.get("max_rate_per_s") is None
        else float(capacity["max_rate_per_s"]),
        settle_p99_s=None if settle_seconds.empty else float(settle_seconds.quantile(0.99)),
        settlement_watched=frames.meta.settlement is not None or not accepted.empty,
        invariant_counts=None if report is None else report.counts(),
        invariants_missing=crashed,
        invariants_unknown={**judge.uncheckable(card_caps, user_cap), **({} if report is None else report.unknown)},
        history_missing=judge.incomplete_history(frames.generator),
        generator=frames.generator,
        failed_faults=failed_faults(frames.events),
        credential_failures=failed,
        attempts=attempts,
        stop=frames.stop,
        not_started=not_started(frames),
        unmatched_line=unmatched.line if unmatched is not None and unmatched.most else None,
    )
    verdicts = judge.judge(findings)
    return Analysis(
        frames=frames,
        slo=thresholds,
        totals=counters.totals(frames),
        latency_intended=intended,
        latency_service=service,
        overall_intended=latency.merged_counts(frames.latency, "intended"),
        overall_service=latency.merged_counts(frames.latency, "service"),
        healthy=healthy,
        recovery=[] if not_started(frames) else [told(entry, verdicts) for entry in recoveries],
        invariants=report,
        daily=daily,
        verdicts=verdicts,
        capacity=capacity,
        exit_code=judge.exit_code(verdicts, frames.stop),
        unmatched=unmatched,
    )


def spans(frames: RunFrames) -> list[judge.Span]:
    """The success ratio and p99 of the whole run, and of each phase when the scenario has several."""
    found = [judge.Span("", counters.success_ratio(frames.windows), _p99(frames, None, None))]
    phases = frames.meta.phases
    for phase in phases if len(phases) > 1 else []:
        start, end = float(phase.start_s), float(phase.end_s)
        seconds = frames.windows[(frames.windows.index >= start) & (frames.windows.index < end)]
        found.append(judge.Span(f"[{phase.name}]", counters.success_ratio(seconds), _p99(frames, start, end)))
    return found


def _p99(frames: RunFrames, start: float | None, end: float | None) -> float | None:
    return latency.latency_summary(latency.merged_counts(frames.latency, start_s=start, end_s=end))["p99_ms"]


def failed_faults(events: pd.DataFrame) -> list[str] | None:
    """Each fault step that failed (`fault_failed` in events.csv), told; None when the run played no fault."""
    chaos = events[events["source"] == "chaos"]
    if chaos.empty or not chaos["kind"].isin([FAULT_INJECTED, FAULT_FAILED]).any():
        return None
    failed = chaos[chaos["kind"] == FAULT_FAILED]
    return [
        f"{target} at {t_s:.1f} s: {detail}"
        for t_s, target, detail in zip(failed["t_s"], failed["target"], failed["detail"], strict=True)
    ]


def _check_invariants(
    frames: RunFrames, card_caps: dict[str, int], user_cap: int | None, daily: DailyTotals
) -> tuple[InvariantReport | None, str]:
    """The invariant checkers' report (None without a ledger, or when a checker crashed: then the reason)."""
    if frames.ledger is None:
        return None, ""
    try:
        return check(
            frames.history,
            frames.ledger,
            card_caps,
            user_cap,
            daily,
            key_prefix=frames.meta.key_prefix,
            schedule=caps.cap_schedule(frames.meta),
            foreign=caps.is_foreign(frames.meta),
            settle_watched=frames.meta.settlement is not None,
        ), ""
    except Exception as exc:  # a crashing checker proves nothing: its verdicts are unknown, the report is written
        return None, f"the invariant checkers could not run: {type(exc).__name__}: {exc}"


def not_started(frames: RunFrames) -> bool:
    """Stopped (a signal, Locust's web UI) before the first arrival: nothing was offered, nothing attempted."""
    return (
        frames.stop is not None
        and frames.stop.aborted is None
        and int(frames.windows["offered"].sum()) == 0
        and frames.history.empty
    )


STALL = "settlement_stall"


def _settlement_recovery(frames: RunFrames, recovery: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A settlement stall hurts no answer (acceptance goes on): its recovery is the backlog's return to its
    level before the fault (`settlement.stall_recovery_s`), measured from the end of the stall."""
    if not any(str(entry.get("event", "")).startswith(STALL) for entry in recovery):
        return recovery
    accepted = settlement.accepted_payments(frames.history)
    total = settlement.backlog(accepted, float(frames.meta.started_unix), len(frames.windows)).sum(axis=1)
    stalls = [fault for fault in frames.meta.faults if fault.get("action") == STALL]
    for entry in recovery:
        if str(entry.get("event", "")).startswith(STALL) and entry.get("played", True) and stalls:
            at_s = float(entry["at_s"])
            fault = min(stalls, key=lambda f: abs(float(f.get("at_s", 0)) - at_s))
            recover_s = settlement.stall_recovery_s(total, at_s, float(fault.get("duration_s") or 0.0))
            entry["recover_s"] = None if recover_s is None else round(recover_s, 3)
            entry["measured_by"] = "settlement backlog back to its level before the stall"
    return recovery


def told(entry: dict[str, Any], verdicts: list[Verdict]) -> dict[str, Any]:
    """A recovery entry with its verdict told after `errors`, as summary.json's `recovered_within_slo`: true,
    false, or null when the verdict is unknown (not played, or the run's SLOs could not be judged)."""
    passed = next((verdict.passed for verdict in verdicts if verdict.name == judge.recovery_name(entry)), None)
    shown: dict[str, Any] = {}
    for key, value in entry.items():
        shown[key] = value
        if key == "errors":
            shown["recovered_within_slo"] = passed
    return shown


def _capacity(frames: RunFrames) -> dict[str, Any] | None:
    """capacity.json of a capacity search (internals §6), else the knee read off steps.csv, else None."""
    if frames.capacity is not None:
        return frames.capacity.model_dump(include={"max_rate_per_s", "spread", "limited_by"})
    return counters.knee(frames.steps)


def summary(analysis: Analysis) -> Summary:
    """summary.json: docs/internals.md §5 fields first, then what the report and `surge compare` read."""
    frames, meta = analysis.frames, analysis.frames.meta
    windows = frames.windows
    active = windows[windows["offered"] > 0]
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
        "success_ratio": counters.success_ratio(windows),
        "latency_ms": {
            "intended": latency.latency_summary(analysis.overall_intended),
            "service": latency.latency_summary(analysis.overall_service),
        },
        "throughput_per_s": {
            "offered": _mean(active["offered"]),
            "succeeded": _mean(active["n_succeeded"]),
            "good": _mean(counters.class_sum(active, GOOD)),
        },
        "codes": counters.codes_share(frames.codes),
        "amount_repaid_fen": int(windows["amount_fen"].sum()),
        "plans_followed": counters.plans_followed(frames),
        "memory": memory.summarize(frames.run_dir, float(meta.duration_s or 0.0)),
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
    section = settlement_summary(analysis)
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


def settlement_summary(analysis: Analysis) -> dict[str, Any] | None:
    """summary.json `settlement` of a run whose client watched asynchronous settlement (None otherwise)."""
    frames = analysis.frames
    accepted = settlement.accepted_payments(frames.history)
    mode = None if frames.meta.settlement is None else frames.meta.settlement.mode
    if mode is None and accepted.empty:
        return None
    stuck = None if analysis.invariants is None else analysis.invariants.counts().get("stuck")
    return settlement.summary_section(accepted, mode, settlement.receiver_counters(frames.run_dir), stuck)


def _mean(series: pd.Series) -> float:
    return round(float(series.mean()), 3) if not series.empty else 0.0


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
