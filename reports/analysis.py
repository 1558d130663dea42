"""A run measured once and judged once: the measure modules in turn, one `judge.Findings`, `judge.judge`.

`analyse` reads the frames through each measure module in one pass (latency, counters, recovery, caps and the
invariants, settlement, memory), hands everything a verdict needs to the judge as one `Findings`, and keeps the
figures the outputs show on the `Analysis`: summary.json and timeseries.csv (`reports.summary`), junit.xml and
report.html then only format it, so they cannot disagree and no output measures or judges again.

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
from reports.invariants.check import InvariantReport, check_run
from reports.invariants.daily_caps import DailyTotals
from reports.measure import caps, counters, latency, recovery
from runfolder.models import Slo
from runfolder.outcomes import OUTCOME_CLASSES, TOKEN_EXPIRED
from runfolder.verdict import GENERATOR_BOTTLENECK, Kind, Verdict


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
    # the run-wide figures summary.json and the page show, measured here so that every output only formats
    success_ratio: float | None
    latency_ms: dict[str, dict[str, Any]]  # intended, service: `measure.latency.latency_summary`
    throughput_per_s: dict[str, float]  # offered, succeeded, good: means over the seconds with offered load
    codes: dict[str, int]
    amount_repaid_fen: int
    plans_followed: int
    memory: dict[str, Any] | None
    settlement: dict[str, Any] | None  # summary.json `settlement`; None when the client watched none
    unmatched: counters.UnmatchedAnswers | None = None

    @property
    def valid(self) -> bool:
        """The generator was not found to be the bottleneck (a run that never started was not invalid)."""
        return all(verdict.passed is not False for verdict in self.of(Kind.RUN) if verdict.name == "generator_valid")

    @property
    def not_started(self) -> bool:
        return self.frames.not_started

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
    """Measure the run once, one measure module after the other, into one `judge.Findings`; then judge it once."""
    meta, windows, slo = frames.meta, frames.windows, frames.meta.slo
    searching = frames.is_capacity_search  # its overload probes fail the scenario's SLOs on purpose: no spans
    phases = [(f"[{p.name}]", float(p.start_s), float(p.end_s)) for p in meta.phases] if len(meta.phases) > 1 else []
    bounds: list[tuple[str, float | None, float | None]] = [] if searching else [("", None, None), *phases]
    # how long attempts took
    intended = latency.latency_per_second(frames.latency, windows.index, "intended")
    service = latency.latency_per_second(frames.latency, windows.index, "service")
    overall_intended = latency.merged_counts(frames.latency, "intended")
    overall_service = latency.merged_counts(frames.latency, "service")
    p99s = [latency.p99_ms(frames.latency, start, end) for _, start, end in bounds]
    latency_ms = {
        "intended": latency.latency_summary(overall_intended),
        "service": latency.latency_summary(overall_service),
    }
    # what was counted; the SLOs judge the service: attempts that failed on credentials are reported apart, and
    # a 401 to an expired token was refreshed and re-sent (counted apart, but the credentials held)
    refused = counters.credential_codes(frames.codes)
    judged = frames
    if refused:
        judged = replace(frames, windows=counters.without_credential_failures(windows, frames.codes))
    ratios = [counters.success_ratio(judged.windows, start, end) for _, start, end in bounds]
    attempts = int(counters.class_sum(windows, OUTCOME_CLASSES).sum())
    totals = counters.totals(frames)
    success_ratio = counters.success_ratio(windows)  # of every admitted attempt, as summary.json tells it
    throughput = counters.means_per_second_with_load(windows)
    codes = counters.codes_share(frames.codes)
    plans_followed = counters.plans_followed(frames)
    capacity = counters.capacity(frames)
    unmatched = counters.unmatched_answers(frames)
    # incidents and how the run recovered from each
    healthy = recovery.healthy_seconds(judged.windows, intended["p99_ms"], slo)
    ran_until = frames.stop.at_s if frames.stop is not None else float("inf")
    found = [] if searching else recovery.incidents(meta, frames.events, ran_until)
    recoveries = [] if searching else recovery.recovery(judged, healthy, found, slo)
    failed = recovery.failed_faults(frames.events)
    # the caps, and the money invariants checked against them
    card_caps, user_cap = caps.caps(meta)
    schedule, foreign = caps.cap_schedule(meta), caps.is_foreign(meta)
    daily = caps.charges_per_day(frames)
    report, crashed = check_run(
        frames.history,
        frames.ledger,
        card_caps,
        user_cap,
        daily,
        meta.key_prefix,
        schedule,
        foreign=foreign,
        settle_watched=meta.settlement is not None,
    )
    # asynchronous settlement: the backlog, the time to final state, a stall's recovery
    accepted = settlement.accepted_payments(frames.history)
    settlement.stall_recoveries(recoveries, accepted, meta, len(windows))
    settle_seconds = settlement.time_to_final_s(accepted)
    mode = None if meta.settlement is None else meta.settlement.mode
    stuck = None if report is None else report.counts().get("stuck")
    settled = settlement.summary_section(accepted, mode, frames.run_dir, stuck)
    used = memory.summarize(frames.run_dir, float(meta.duration_s or 0.0))
    # judged once
    findings = judge.Findings(
        slo=slo,
        spans=[judge.Span(suffix, ratio, p99) for (suffix, _, _), ratio, p99 in zip(bounds, ratios, p99s, strict=True)],
        recovery=recoveries,
        capacity_search=searching,
        capacity_rate=None
        if capacity is None or capacity.get("max_rate_per_s") is None
        else float(capacity["max_rate_per_s"]),
        settle_p99_s=None if settle_seconds.empty else float(settle_seconds.quantile(0.99)),
        settlement_watched=meta.settlement is not None or not accepted.empty,
        invariant_counts=None if report is None else report.counts(),
        invariants_missing=crashed,
        invariants_unknown={**judge.uncheckable(card_caps, user_cap), **({} if report is None else report.unknown)},
        history_missing=judge.incomplete_history(frames.generator),
        generator=frames.generator,
        failed_faults=failed,
        credential_failures={code: count for code, count in refused.items() if code != TOKEN_EXPIRED},
        attempts=attempts,
        stop=frames.stop,
        not_started=frames.not_started,
        unmatched_line=unmatched.line if unmatched is not None and unmatched.most else None,
    )
    verdicts = judge.judge(findings)
    return Analysis(
        frames=frames,
        slo=slo,
        totals=totals,
        latency_intended=intended,
        latency_service=service,
        overall_intended=overall_intended,
        overall_service=overall_service,
        healthy=healthy,
        recovery=[] if frames.not_started else [judge.told(entry, verdicts) for entry in recoveries],
        invariants=report,
        daily=daily,
        verdicts=verdicts,
        capacity=capacity,
        exit_code=judge.exit_code(verdicts, frames.stop),
        success_ratio=success_ratio,
        latency_ms=latency_ms,
        throughput_per_s=throughput,
        codes=codes,
        amount_repaid_fen=int(windows["amount_fen"].sum()),
        plans_followed=plans_followed,
        memory=used,
        settlement=settled,
        unmatched=unmatched,
    )
