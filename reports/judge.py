"""Judge once: what a run measured (`Findings`) becomes `Verdict`s, merged once into its exit code.

The SLOs (docs/scenarios.md): success ratio and p99 overall and per phase (`success_ratio[phase]`, so a CI
failure says *when* the gateway broke), recovery per fault or spike (`recovery_s[event@at]`), the settlement p99;
the money invariants against their bounds; the run's own checks (the generator kept up, every fault was injected,
the credentials held, no `[[abort]]` rule tripped). A phase that admitted nothing proves nothing: no verdict.
Unknown is never a pass; a verdict is unknown when surge could not check it, when the run never started, when
most of a target's answers matched no response rule (a ratio would judge the profile, not the service), when most
attempts failed on credentials, and when workers' history rows were lost. Each judging step runs through `safely`:
one that crashes becomes an unknown verdict with the error as its reason. The exit code is `verdict.merge`'s
rule, unless the run was stopped: a stop decides it (130 SIGINT, 143 SIGTERM, 1 a tripped `[[abort]]` rule).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runfolder.models import GeneratorVerdict, Slo
from runfolder.stop import StopRecord
from runfolder.verdict import Kind, State, Verdict, merge

Verdicts = list[Verdict]


@dataclass(frozen=True, slots=True)
class Span:
    """The success ratio and p99 of the whole run (`suffix` "") or of one phase (`[name]`)."""

    suffix: str
    success_ratio: float | None
    p99_ms: float | None


@dataclass(frozen=True, slots=True)
class Findings:
    """Every measured figure a verdict is made from; judging reads nothing else."""

    slo: Slo
    spans: list[Span] = field(default_factory=list)
    recovery: list[dict[str, Any]] = field(default_factory=list)
    capacity_search: bool = False
    capacity_rate: float | None = None
    settle_p99_s: float | None = None
    settlement_watched: bool = False
    invariant_counts: dict[str, int] | None = None  # None: not checked (no ledger), see `invariants_missing`
    invariants_missing: str = ""
    invariants_unknown: Mapping[str, str] = field(default_factory=dict)
    history_missing: str | None = None
    generator: GeneratorVerdict | None = None
    failed_faults: list[str] | None = None  # None: the run played no fault
    credential_failures: Mapping[str, int] = field(default_factory=dict)
    attempts: int = 0
    stop: StopRecord | None = None
    not_started: bool = False
    unmatched_line: str | None = None  # most of a target's 2xx answers matched no response rule


NO_LEDGER = "no ledger copy (a gateway surge did not start): not checked"
NO_CAPS = "the caps are unknown (meta.json has no gateway config: a gateway surge did not start)"
CREDENTIALS_HINT = "check the profile's credentials"
NO_SETTLE = "no accepted payment was learned final"
# verdicts computed from the outcome classes the profile's rules gave: unknown when most 2xx answers matched none
JUDGED_BY_OUTCOMES = ("success_ratio", "recovery_s")


def judge(findings: Findings) -> Verdicts:
    """Every verdict of the run: SLOs, then invariants, then the run's checks (the order of every output)."""
    slos = safely(Kind.SLO, "slo", lambda: slo_verdicts(findings))
    invariants = safely(Kind.INVARIANT, "invariants", lambda: invariant_verdicts(findings))
    run = safely(Kind.RUN, "run", lambda: run_verdicts(findings))
    if findings.not_started and findings.stop is not None:
        reason = f"not started: {findings.stop.reason} before the first arrival"
        return [verdict.unknown(reason) for verdict in (*slos, *invariants, *run)]
    return [*slos, *invariants, *run]


def exit_code(verdicts: Verdicts, stop: StopRecord | None) -> int:
    """The run's exit code: a stop's own (a signal, a tripped abort rule), else the verdicts merged."""
    stopped = stop.exit_code if stop is not None else None
    return stopped or int(merge(verdicts))


def safely(kind: Kind, name: str, judging: Callable[[], Verdicts]) -> Verdicts:
    """`judging()`, or — when it crashes — one unknown verdict saying so: a check that could not be made proved
    nothing, and a crash in one judge must not cost the run its other verdicts or its report."""
    try:
        return judging()
    except Exception as exc:  # any crash of a judge is the same unknown, reported with its error
        return [Verdict.of(kind, name, None, None, None, f"could not be judged: {type(exc).__name__}: {exc}")]


def slo_verdicts(findings: Findings) -> Verdicts:
    """Success ratio and p99 overall and per phase, recovery per incident, the settlement p99; for a capacity
    search its one SLO, `capacity_found`, since its overload probes fail the scenario's SLOs on purpose."""
    slo = findings.slo
    if findings.capacity_search:
        rate = findings.capacity_rate
        return [Verdict.of(Kind.SLO, "capacity_found", rate, 0.0, rate is not None and rate > 0)]
    found: Verdicts = []
    for span in findings.spans:
        if span.suffix and span.success_ratio is None:
            continue
        ratio, p99 = f"success_ratio{span.suffix}", f"p99_ms{span.suffix}"
        found.append(Verdict.bounded(Kind.SLO, ratio, span.success_ratio, slo.min_success_ratio, at_least=True))
        found.append(Verdict.bounded(Kind.SLO, p99, span.p99_ms, slo.max_p99_ms, at_least=False))
    for entry in findings.recovery:
        name = recovery_name(entry)
        if entry.get("played", True):
            found.append(Verdict.bounded(Kind.SLO, name, entry["recover_s"], slo.max_recovery_s, at_least=False))
        else:
            found.append(Verdict.of(Kind.SLO, name, None, slo.max_recovery_s, None, entry.get("not_played")))
    failed = _credentials_failed(findings)
    if failed and 2 * failed > findings.attempts:  # what the service did is unknown, not failed
        reason = _credentials_reason(findings)
        found = [verdict.model_copy(update={"state": State.UNKNOWN, "reason": reason}) for verdict in found]
    if findings.settlement_watched:
        bound = slo.max_settle_p99_s
        if findings.settle_p99_s is None:
            found.append(Verdict.of(Kind.SLO, "settle_p99_s", None, bound, None, NO_SETTLE))
        else:
            found.append(Verdict.bounded(Kind.SLO, "settle_p99_s", findings.settle_p99_s, bound, at_least=False))
    if findings.unmatched_line is not None:
        found = [
            verdict.unknown(findings.unmatched_line) if verdict.name.startswith(JUDGED_BY_OUTCOMES) else verdict
            for verdict in found
        ]
    return found


def recovery_name(entry: Mapping[str, Any]) -> str:
    """The verdict on one incident's recovery: `recovery_s[kill r1@30s]`."""
    return f"recovery_s[{entry['event']}@{entry['at_s']:g}s]"


def told(entry: dict[str, Any], verdicts: Verdicts) -> dict[str, Any]:
    """A recovery entry with its verdict told after `errors`, as summary.json's `recovered_within_slo`: true,
    false, or null when the verdict is unknown (not played, or the run's SLOs could not be judged)."""
    passed = next((verdict.passed for verdict in verdicts if verdict.name == recovery_name(entry)), None)
    shown: dict[str, Any] = {}
    for key, value in entry.items():
        shown[key] = value
        if key == "errors":
            shown["recovered_within_slo"] = passed
    return shown


def invariant_verdicts(findings: Findings) -> Verdicts:
    """lost and over-cap against the scenario's tolerance, phantom and duplicate against zero; for a run whose
    client watched asynchronous settlement also stuck and flipped against theirs, double_settled and
    callback_mismatch against zero. Unknown without a ledger (`invariants_missing`) and for single invariants
    the evidence cannot decide (`invariants_unknown`: over_cap without the caps) — a violation found is a fact,
    even where a 0 would prove nothing."""
    slo = findings.slo
    bounds: dict[str, int] = {"lost": slo.max_lost, "phantom": 0, "duplicate": 0, "over_cap": slo.max_over_cap}
    if findings.settlement_watched:
        bounds |= {"stuck": slo.max_stuck, "flipped": slo.max_flipped, "double_settled": 0, "callback_mismatch": 0}
    counts = findings.invariant_counts
    if counts is None:
        reason = findings.invariants_missing or NO_LEDGER
        return [Verdict.of(Kind.INVARIANT, name, None, bound, None, reason) for name, bound in bounds.items()]
    unknown = findings.invariants_unknown
    found = [
        Verdict.of(Kind.INVARIANT, name, None, bound, None, unknown[name])
        if name in unknown and not counts.get(name)
        else Verdict.bounded(Kind.INVARIANT, name, counts[name], bound, at_least=False)
        for name, bound in bounds.items()
    ]
    if findings.history_missing is not None:
        found = [unproven(verdict, findings.history_missing) for verdict in found]
    return found


def unproven(verdict: Verdict, reason: str) -> Verdict:
    """An invariant checked over part of the history: unknown with `reason`. Only `lost` and `duplicate` found
    above their bound stay failed: a missing row can hide such a violation, never make one (phantom and over-cap
    counts can be made by the rows that are missing)."""
    if verdict.name in ("lost", "duplicate") and verdict.passed is False:
        return verdict
    return verdict.unknown(reason)


def uncheckable(card_caps: dict[str, int], user_cap: int | None) -> dict[str, str]:
    """Invariants a ledger alone cannot decide: over_cap needs the caps, which only surge's own gateway config
    (or a target profile's `[ledger.caps]`) gives."""
    return {"over_cap": NO_CAPS} if not card_caps and user_cap is None else {}


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


def run_verdicts(findings: Findings) -> Verdicts:
    """The generator kept up (without it, latency and throughput describe surge, not the gateway; no
    generator.json proves nothing against it); no fault's injection or undo failed (the harness did not run the
    scenario asked for); the credentials held (a failure there is the profile's: unknown, never a fail of the
    service); no `[[abort]]` rule tripped (the run hurt its target)."""
    generator = findings.generator
    valid = True if generator is None else generator.valid
    reasons = None if generator is None else "; ".join(generator.reasons) or None
    found = [Verdict.of(Kind.RUN, "generator_valid", valid, True, valid, None if valid else reasons)]
    if findings.failed_faults is not None:
        failed = findings.failed_faults
        found.append(Verdict.of(Kind.RUN, "fault_failures", len(failed), 0, not failed, "; ".join(failed) or None))
    if _credentials_failed(findings):
        total = _credentials_failed(findings)
        found.append(Verdict.of(Kind.RUN, "credentials", total, 0, None, _credentials_reason(findings)))
    aborted = findings.stop.aborted if findings.stop is not None else None
    if aborted is not None:
        found.append(Verdict.of(Kind.RUN, "aborted", aborted.value, aborted.rule, False, f"abort rule {aborted.rule}"))
    return found


def _credentials_failed(findings: Findings) -> int:
    return sum(findings.credential_failures.values())


def _credentials_reason(findings: Findings) -> str:
    """Attempts refused as unauthorized, unsigned, without a token or at the TLS handshake, by code."""
    codes = ", ".join(f"{code} {count}" for code, count in findings.credential_failures.items())
    total, attempts = _credentials_failed(findings), findings.attempts
    return f"{total} of {attempts} attempts refused as unauthorized ({codes}) — {CREDENTIALS_HINT}"
