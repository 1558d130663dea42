"""Judging, once: measured figures in, verdicts out, one exit code; a judge that crashes proves nothing."""

from __future__ import annotations

import pytest

from reports import judge
from reports.judge import Findings, Span, recovery_name, slo_verdicts
from runfolder.models import GeneratorVerdict, Slo
from runfolder.stop import StopRecord
from runfolder.verdict import ExitCode, Kind, State, Verdict

SLO = Slo()
CLEAN = {"lost": 0, "phantom": 0, "duplicate": 0, "over_cap": 0}


def healthy(**changes: object) -> Findings:
    """A run where everything held: every verdict passes."""
    base: dict[str, object] = {
        "slo": SLO,
        "spans": [Span("", 0.999, 120.0), Span("[peak]", 0.995, 300.0)],
        "recovery": [{"event": "kill r1", "at_s": 30.0, "recover_s": 2.5, "played": True}],
        "invariant_counts": dict(CLEAN),
        "generator": GeneratorVerdict(),
    }
    return Findings(**(base | changes))  # type: ignore[arg-type]


def states(verdicts: list[Verdict]) -> dict[str, State]:
    return {verdict.name: verdict.state for verdict in verdicts}


def test_a_healthy_run_passes_every_verdict_in_the_order_of_every_output() -> None:
    verdicts = judge.judge(healthy())
    assert [v.name for v in verdicts] == [
        "success_ratio", "p99_ms", "success_ratio[peak]", "p99_ms[peak]", "recovery_s[kill r1@30s]",
        "lost", "phantom", "duplicate", "over_cap", "generator_valid",
    ]  # fmt: skip
    assert set(states(verdicts).values()) == {State.PASS}
    assert judge.exit_code(verdicts, None) == ExitCode.PASS


def test_one_lost_payment_fails_the_run() -> None:
    verdicts = judge.judge(healthy(invariant_counts=CLEAN | {"lost": 1}))
    assert [v.name for v in verdicts if v.state is State.FAIL] == ["lost"]
    assert judge.exit_code(verdicts, None) == ExitCode.FAIL


def test_a_recovery_too_slow_or_never_seen_fails_and_one_within_the_bound_passes() -> None:
    slow = {"event": "kill r2", "at_s": 60.0, "recover_s": SLO.max_recovery_s + 0.001, "played": True}
    never = {"event": "spike", "at_s": 90.5, "recover_s": None, "played": True}
    found = states(slo_verdicts(healthy(recovery=[{"event": "kill r1", "at_s": 30.0, "recover_s": 2.5}, slow, never])))
    assert found["recovery_s[kill r1@30s]"] is State.PASS
    assert found["recovery_s[kill r2@60s]"] is found["recovery_s[spike@90.5s]"] is State.FAIL
    assert recovery_name(never) == "recovery_s[spike@90.5s]"


def test_one_slow_phase_fails_only_its_own_verdict() -> None:
    verdicts = judge.judge(healthy(spans=[Span("", 0.999, 120.0), Span("[peak]", 0.995, 801.0)]))
    assert [v.name for v in verdicts if v.state is State.FAIL] == ["p99_ms[peak]"]
    assert judge.exit_code(verdicts, None) == ExitCode.FAIL


def test_an_empty_phase_yields_no_verdict_but_an_empty_run_fails() -> None:
    verdicts = judge.judge(healthy(spans=[Span("", None, None), Span("[idle]", None, None)]))
    assert states(verdicts)["success_ratio"] is State.FAIL and "success_ratio[idle]" not in states(verdicts)


def test_a_crashing_judge_becomes_unknown_with_its_reason_never_a_pass() -> None:
    def crash() -> list[Verdict]:
        raise ZeroDivisionError("division by zero")

    (verdict,) = judge.safely(Kind.INVARIANT, "invariants", crash)
    assert verdict.state is State.UNKNOWN and verdict.kind is Kind.INVARIANT
    assert verdict.reason == "could not be judged: ZeroDivisionError: division by zero"
    assert judge.exit_code([verdict], None) == ExitCode.HARNESS


def test_a_crash_in_one_judge_keeps_the_others() -> None:
    broken = healthy(recovery=[{"event": "kill r1", "at_s": "thirty"}])  # a malformed figure: the SLO judge crashes
    verdicts = judge.judge(broken)
    slo = [v for v in verdicts if v.kind is Kind.SLO]
    assert len(slo) == 1 and slo[0].state is State.UNKNOWN and "could not be judged" in str(slo[0].reason)
    assert {v.state for v in verdicts if v.kind is not Kind.SLO} == {State.PASS}
    assert judge.exit_code(verdicts, None) == ExitCode.HARNESS


def test_without_a_ledger_every_invariant_is_unknown() -> None:
    verdicts = judge.judge(healthy(invariant_counts=None))
    invariants = [v for v in verdicts if v.kind is Kind.INVARIANT]
    assert {v.state for v in invariants} == {State.UNKNOWN} and invariants[0].reason == judge.NO_LEDGER


def test_a_violation_found_is_a_fact_even_where_zero_proves_nothing() -> None:
    unknown = {"over_cap": judge.NO_CAPS}
    assert states(judge.judge(healthy(invariants_unknown=unknown)))["over_cap"] is State.UNKNOWN
    found = healthy(invariants_unknown=unknown, invariant_counts=CLEAN | {"over_cap": 2})
    assert states(judge.judge(found))["over_cap"] is State.FAIL


def test_lost_history_leaves_only_a_found_loss_failed() -> None:
    verdicts = judge.judge(healthy(invariant_counts=CLEAN | {"lost": 1, "phantom": 3}, history_missing="gone"))
    assert states(verdicts)["lost"] is State.FAIL and states(verdicts)["phantom"] is State.UNKNOWN


def test_an_invalid_generator_is_the_harness_failing_not_the_gateway() -> None:
    verdicts = judge.judge(healthy(generator=GeneratorVerdict(valid=False, reasons=["cpu 99 %"])))
    assert states(verdicts)["generator_valid"] is State.FAIL
    assert judge.exit_code(verdicts, None) == ExitCode.HARNESS


@pytest.mark.parametrize(("by", "code"), [("sigint", ExitCode.SIGINT), ("sigterm", ExitCode.SIGTERM)])
def test_a_signal_decides_the_exit_code(by: str, code: ExitCode) -> None:
    stop = StopRecord(at_unix=1.0, at_s=1.0, by=by, reason="Ctrl-C")  # type: ignore[arg-type]
    assert judge.exit_code(judge.judge(healthy(stop=stop)), stop) == code


def test_a_run_that_never_started_proves_nothing() -> None:
    stop = StopRecord(at_unix=1.0, at_s=-2.0, by="sigint", reason="SIGINT")
    verdicts = judge.judge(healthy(stop=stop, not_started=True))
    assert {v.state for v in verdicts} == {State.UNKNOWN}
    assert verdicts[0].reason == "not started: SIGINT before the first arrival"


def test_most_attempts_refused_on_credentials_judge_the_profile_not_the_service() -> None:
    verdicts = judge.judge(healthy(credential_failures={"UNAUTHORIZED": 60}, attempts=100))
    assert {v.state for v in verdicts if v.kind is Kind.SLO} == {State.UNKNOWN}
    assert states(verdicts)["credentials"] is State.UNKNOWN


def test_an_unmatched_profile_leaves_latency_judged() -> None:
    verdicts = judge.judge(healthy(unmatched_line="900 answers (2xx) matched no response rule — check the profile"))
    assert states(verdicts)["success_ratio"] is State.UNKNOWN and states(verdicts)["p99_ms"] is State.PASS
    assert states(verdicts)["recovery_s[kill r1@30s]"] is State.UNKNOWN


def test_a_capacity_search_is_judged_by_capacity_found_alone() -> None:
    verdicts = judge.judge(healthy(capacity_search=True, capacity_rate=0.0))
    assert [v.name for v in verdicts if v.kind is Kind.SLO] == ["capacity_found"]
    assert states(verdicts)["capacity_found"] is State.FAIL
