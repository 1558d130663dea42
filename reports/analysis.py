"""Everything the outputs need, computed once from a run's frames: the gather step (Locust's `html.py` way).

`finalize`, `render` and `compare` all start from an `Analysis`, so the numbers in summary.json, junit.xml,
timeseries.csv and the HTML cannot disagree.

A capacity search (internals §6) is judged by one check, `capacity_found`, plus the invariants: its overload
probes fail the scenario SLOs on purpose. Without a ledger copy the invariants are unknown (counts `null`).

Every verdict is pass, fail or unknown (`reports.slo.verdict`); unknown — a fault that was never played, an
invariant with no ledger or no caps to check against — is never a pass.

Exit code (README), in this order:

1. an invariant violated (lost, phantom, duplicate or over-cap money): **1**, whatever else happened — money
   errors are real even when the load generator struggled;
2. the harness did not produce the run it was asked for: the generator was the bottleneck (`generator.json`
   `valid: false`) or a fault's injection failed (`fault_failed`): **3** — neither a pass (0) nor an SLO
   failure (1) would be true;
3. an SLO failed: **1**;
4. a verdict is unknown (nothing failed, but not everything was checked): **3**, because 0 means "every SLO and
   invariant held" and surge cannot say so;
5. otherwise **0**.

Against a target profile, when most 2xx answers matched no response rule (`counters.UnmatchedAnswers`), the
verdicts judged by outcome classes (success ratios, recoveries) are unknown: a wrong rule is not a failing service.

A run stopped before its first arrival (`not_started`: a signal during start-up) measured nothing: every verdict
is unknown with that reason — no "invalid run", no invariant "held" over no payment — and the stop decides the
exit code. A run stopped early (stop.json, `StopRecord`) is judged on the seconds that ran (the frames end at the stop,
and faults or spikes planned after it are no incidents), and the stop decides the exit code: **130** for
SIGINT, **143** for SIGTERM, **1** for a tripped `[[abort]]` rule (also a failed `aborted` check in junit.xml);
a stop in Locust's web UI is the user's choice and leaves the rules above in force.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from reports import hdr, invariants, memory, settlement, slo
from reports.frames import CLASSES, RunFrames
from reports.invariants import DailyTotals, InvariantReport
from reports.measure import caps, counters, latency, recovery
from runfolder.models import GeneratorVerdict, Slo, Summary
from runfolder.outcomes import GOOD, TOKEN_EXPIRED

EXIT_PASS, EXIT_FAILED, EXIT_HARNESS = 0, 1, 3


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
    slo_verdicts: list[dict[str, Any]]
    invariant_verdicts: list[dict[str, Any]]
    generator_verdict: dict[str, Any]
    run_verdicts: list[dict[str, Any]]
    capacity: dict[str, Any] | None
    exit_code: int
    unmatched: counters.UnmatchedAnswers | None = None

    @property
    def valid(self) -> bool:
        """The generator was not found to be the bottleneck (a run that never started was not invalid)."""
        return self.generator_verdict["passed"] is not False

    @property
    def not_started(self) -> bool:
        return not_started(self.frames)

    @property
    def invalid_because(self) -> str | None:
        """Why the run is invalid, in words for a banner (None when valid): the generator, or the scenario's pool."""
        if self.valid:
            return None
        generator = self.frames.generator
        return "the load generator was the bottleneck" if generator is None else generator.bottleneck


def analyse(frames: RunFrames) -> Analysis:
    """All metrics, verdicts and the exit code of one run."""
    thresholds = frames.meta.slo
    seconds = frames.windows.index
    intended = latency.latency_per_second(frames.latency, seconds, "intended")
    service = latency.latency_per_second(frames.latency, seconds, "service")
    refused = counters.credential_codes(frames.codes)
    attempts = int(counters.class_sum(frames.windows, CLASSES).sum())
    # a 401 to an expired token was refreshed and re-sent: counted apart, but the credentials held
    failed = {code: count for code, count in refused.items() if code != TOKEN_EXPIRED}
    credentials = slo.credentials_verdict(failed, attempts)
    judged = frames  # the SLOs judge the service: attempts that failed on credentials are reported apart
    if refused:
        judged = replace(frames, windows=counters.without_credential_failures(frames.windows, frames.codes))
    healthy = recovery.healthy_seconds(judged.windows, intended["p99_ms"], thresholds)
    capacity = _capacity(frames)
    if frames.is_capacity_search:
        recoveries: list[dict[str, Any]] = []
        slo_verdicts = [slo.capacity_verdict(None if capacity is None else capacity.get("max_rate_per_s"))]
    else:
        ran_until = frames.stop.at_s if frames.stop is not None else float("inf")
        found = [i for i in recovery.incidents(frames.meta, frames.events) if i.start_s < ran_until]
        recoveries = _settlement_recovery(frames, recovery.recovery(judged, healthy, found, thresholds))
        slo_verdicts = slo.slo_verdicts(judged, thresholds, recoveries)
        if credentials is not None and 2 * sum(failed.values()) > attempts:
            slo_verdicts = slo.mostly_unauthorized(slo_verdicts, str(credentials["reason"]))
    card_caps, user_cap = caps.caps(frames.meta)
    daily = caps.charges_per_day(frames)
    report = (
        None
        if frames.ledger is None
        else invariants.check(
            frames.history,
            frames.ledger,
            card_caps,
            user_cap,
            daily,
            key_prefix=frames.meta.key_prefix,
            schedule=caps.cap_schedule(frames.meta),
            foreign=caps.is_foreign(frames.meta),
            settle_watched=frames.meta.settlement is not None,
        )
    )
    accepted = settlement.accepted_payments(frames.history)
    watched = frames.meta.settlement is not None or not accepted.empty
    if watched and not frames.is_capacity_search:
        slo_verdicts.append(slo.settle_verdict(settlement.time_to_final_s(accepted), thresholds))
    invariant_verdicts = slo.invariant_verdicts(
        None if report is None else report.counts(),
        thresholds,
        unknown={**uncheckable(card_caps, user_cap), **({} if report is None else report.unknown)},
        settlement=watched,
    )
    missing = incomplete_history(frames.generator)
    if missing is not None:
        invariant_verdicts = [slo.unproven(entry, missing) for entry in invariant_verdicts]
    generator = slo.generator_verdict(frames.generator)
    injection = slo.fault_injection_verdict(frames.events)
    run_verdicts = [generator] if injection is None else [generator, injection]
    if credentials is not None:
        run_verdicts.append(credentials)
    aborted = frames.stop.aborted if frames.stop is not None else None
    if aborted is not None:  # the run hurt its target: a failed check of its own in junit.xml and the report
        run_verdicts.append(slo.verdict("aborted", aborted.value, aborted.rule, False, f"abort rule {aborted.rule}"))
    unmatched = counters.unmatched_answers(frames)
    if unmatched is not None and unmatched.most:  # the ratios would judge the profile's rules, not the service
        slo_verdicts = [
            slo.verdict(str(entry["name"]), None, entry["bound"], None, unmatched.line)
            if str(entry["name"]).startswith(JUDGED_BY_OUTCOMES)
            else entry
            for entry in slo_verdicts
        ]
    if not_started(frames):
        recoveries = []
        slo_verdicts = [_never_measured(entry, frames) for entry in slo_verdicts]
        invariant_verdicts = [_never_measured(entry, frames) for entry in invariant_verdicts]
        generator = _never_measured(generator, frames)
        run_verdicts = [generator, *(_never_measured(entry, frames) for entry in run_verdicts[1:])]
    return Analysis(
        frames=frames,
        slo=thresholds,
        totals=counters.totals(frames),
        latency_intended=intended,
        latency_service=service,
        overall_intended=latency.merged_counts(frames.latency, "intended"),
        overall_service=latency.merged_counts(frames.latency, "service"),
        healthy=healthy,
        recovery=recoveries,
        invariants=report,
        daily=daily,
        slo_verdicts=slo_verdicts,
        invariant_verdicts=invariant_verdicts,
        generator_verdict=generator,
        run_verdicts=run_verdicts,
        capacity=capacity,
        exit_code=_stop_exit_code(frames) or exit_code(invariant_verdicts, run_verdicts, slo_verdicts),
        unmatched=unmatched,
    )


# verdicts computed from the outcome classes the profile's rules gave: unknown when most 2xx answers matched none
JUDGED_BY_OUTCOMES = ("success_ratio", "recovery_s")


def incomplete_history(generator: GeneratorVerdict | None) -> str | None:
    """Why the invariants cannot be trusted when workers' history rows never reached the master, else None."""
    if generator is None:
        return None
    reasons = []
    if generator.history_missing:
        by = ", ".join(f"{worker}: {rows}" for worker, rows in generator.history_missing_by.items())
        reasons.append(f"{generator.history_missing} history rows never reached the master ({by})")
    for lost in generator.lost_workers:
        reasons.append(f"{lost.worker} was lost at t = {lost.at_s:.0f} s: its attempts after it are not in the history")
    return "; ".join(reasons) or None


def not_started(frames: RunFrames) -> bool:
    """Stopped (a signal, Locust's web UI) before the first arrival: nothing was offered, nothing attempted."""
    return (
        frames.stop is not None
        and frames.stop.aborted is None
        and int(frames.windows["offered"].sum()) == 0
        and frames.history.empty
    )


def _never_measured(entry: dict[str, Any], frames: RunFrames) -> dict[str, Any]:
    """A verdict of a run that never started: unknown, whatever an empty run would have computed for it."""
    assert frames.stop is not None
    reason = f"not started: {frames.stop.reason} before the first arrival"
    return slo.verdict(str(entry["name"]), None, entry["bound"], None, reason)


NO_CAPS = "the caps are unknown (meta.json has no gateway config: a gateway surge did not start)"


def uncheckable(card_caps: dict[str, int], user_cap: int | None) -> dict[str, str]:
    """Invariants a ledger alone cannot decide: over_cap needs the caps, which only surge's own gateway config
    (or a target profile's `[ledger.caps]`) gives."""
    return {"over_cap": NO_CAPS} if not card_caps and user_cap is None else {}


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
            entry["recovered_within_slo"] = recover_s is not None and recover_s <= frames.meta.slo.max_recovery_s
            entry["measured_by"] = "settlement backlog back to its level before the stall"
    return recovery


def _capacity(frames: RunFrames) -> dict[str, Any] | None:
    """capacity.json of a capacity search (internals §6), else the knee read off steps.csv, else None."""
    if frames.capacity is not None:
        return frames.capacity.model_dump(include={"max_rate_per_s", "spread", "limited_by"})
    return counters.knee(frames.steps)


def _stop_exit_code(frames: RunFrames) -> int | None:
    return frames.stop.exit_code if frames.stop is not None else None


def exit_code(
    invariant_verdicts: list[dict[str, Any]], run_verdicts: list[dict[str, Any]], slo_verdicts: list[dict[str, Any]]
) -> int:
    """The rules of the module docstring, in their order."""
    if any(slo.outcome(verdict) == slo.FAIL for verdict in invariant_verdicts):
        return EXIT_FAILED
    if any(slo.outcome(verdict) == slo.FAIL for verdict in run_verdicts):
        return EXIT_HARNESS
    if any(slo.outcome(verdict) == slo.FAIL for verdict in slo_verdicts):
        return EXIT_FAILED
    every = [*invariant_verdicts, *run_verdicts, *slo_verdicts]
    return EXIT_HARNESS if any(slo.outcome(verdict) == slo.UNKNOWN for verdict in every) else EXIT_PASS


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
        "slos": analysis.slo_verdicts,
        "invariants": _invariant_counts(analysis),
        "invariant_verdicts": analysis.invariant_verdicts,
        "run_verdicts": analysis.run_verdicts,
        "unknown": [verdict["name"] for verdict in all_verdicts(analysis) if slo.outcome(verdict) == slo.UNKNOWN],
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
    if incomplete_history(analysis.frames.generator) is not None:  # counted over part of the history: unknown
        return {verdict["name"]: verdict["value"] for verdict in analysis.invariant_verdicts}
    if analysis.invariants is not None:
        return dict(analysis.invariants.counts())
    return {verdict["name"]: None for verdict in analysis.invariant_verdicts}


def settlement_summary(analysis: Analysis) -> dict[str, Any] | None:
    """summary.json `settlement` of a run whose client watched asynchronous settlement (None otherwise)."""
    frames = analysis.frames
    accepted = settlement.accepted_payments(frames.history)
    mode = None if frames.meta.settlement is None else frames.meta.settlement.mode
    if mode is None and accepted.empty:
        return None
    stuck = None if analysis.invariants is None else analysis.invariants.counts().get("stuck")
    return settlement.summary_section(accepted, mode, settlement.receiver_counters(frames.run_dir), stuck)


def all_verdicts(analysis: Analysis) -> list[dict[str, Any]]:
    """Every verdict of the run with its group (SLO, invariant, run), in the order of junit.xml."""
    groups = (
        ("SLO", analysis.slo_verdicts),
        ("invariant", analysis.invariant_verdicts),
        ("run", analysis.run_verdicts),
    )
    return [{**verdict, "group": group} for group, verdicts in groups for verdict in verdicts]


def _mean(series: pd.Series) -> float:
    return round(float(series.mean()), 3) if not series.empty else 0.0


def timeseries(analysis: Analysis) -> pd.DataFrame:
    """timeseries.csv: one row per second — counters, each problem code, latency, amount repaid."""
    windows = analysis.frames.windows
    frame = pd.DataFrame({"t_s": windows.index, "offered": windows["offered"], "sent": windows["sent"]})
    for cls in CLASSES:
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
