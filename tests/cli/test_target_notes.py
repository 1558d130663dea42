"""The lines `surge run --target` adds under its verdict table, drawn from the summary the run was judged into
(no second reading of the folder or its ledger)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from loadtests.cli.run import LOST_KEYS_SHOWN, _target_notes


def _profile(ledger: object | None = "a [ledger] query") -> Any:
    return SimpleNamespace(name="acme-pay", ledger=ledger)


def _scenario(policy: str = "give-up") -> Any:
    return SimpleNamespace(client=SimpleNamespace(policy=policy))


def _summary(lost: int, **more: Any) -> dict[str, Any]:
    examples = [{"key": f"s1-{i}", "repayment_id": "", "amount_fen": 100} for i in range(min(lost, 20))]
    return {"invariants": {"lost": lost}, "invariant_examples": {"lost": examples}, **more}


def test_lost_payments_are_named_by_key_and_the_rest_counted() -> None:
    notes = _target_notes(_summary(LOST_KEYS_SHOWN + 3), _scenario(), _profile())
    keys = ", ".join(f"s1-{i}" for i in range(LOST_KEYS_SHOWN))
    assert notes == [f"lost payments (acknowledged, not in acme-pay's ledger), by key: {keys} and 3 more"]


def test_a_run_that_lost_nothing_adds_no_line() -> None:
    assert _target_notes(_summary(0), _scenario(), _profile()) == []


def test_without_a_ledger_query_the_invariants_are_said_unknown() -> None:
    assert _target_notes(_summary(0), _scenario(), _profile(ledger=None)) == [
        "invariants: unknown (the profile has no [ledger] query)"
    ]


def test_a_credentials_failure_and_follow_plan_declines_are_told() -> None:
    summary = _summary(
        0,
        run_verdicts=[{"name": "credentials", "reason": "401 on every attempt"}, {"name": "generator"}],
        totals={"declined": 4},
    )
    assert _target_notes(summary, _scenario("follow-plan"), _profile()) == [
        "credentials: 401 on every attempt",
        "follow-plan: acme-pay offers no suggested plan, so each of the 4 declined attempts ended its payment",
    ]
