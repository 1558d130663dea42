"""The settlement checks (stuck, flipped, double_settled, callback_mismatch) on hand-made histories holding
exactly one violation of their kind, and on a clean one; settled money only for the money checks."""

from __future__ import annotations

from typing import Any

import pandas as pd

from reports import violations
from reports.invariants.check import NAMES, InvariantReport, check
from reports.invariants.settlement import SETTLEMENT_NAMES
from tests.reports.test_invariants import CARD_CAPS, USER_CAP, attempt, history, ledger, record


def accepted(key: str, settlement: str = "succeeded", **settle: Any) -> dict[str, Any]:
    """A 202 "accepted, processing" attempt whose watcher learned `settlement` (internals §5 history columns)."""
    row = attempt(key, 202, repayment_id=f"rp-{key}")
    row.update({"outcome": "succeeded", "settlement": settlement, "final_at": 3.0 if settlement else 0.0})
    row.update({"settle_code": "", "polls": 1, "callbacks": 0, "callback_refused": 0, "callback_dups": 0})
    row.update({"callback_status": "", "flipped_to": ""})
    row.update(settle)
    return row


def settled(key: str, status: str = "succeeded") -> dict[str, Any]:
    return {**record(key, f"rp-{key}"), "status": status}


def async_ledger(*rows: dict[str, Any]) -> pd.DataFrame:
    frame = ledger(*rows)
    frame["status"] = [row["status"] for row in rows]
    return frame


CLEAN = (accepted("a1"), accepted("a2", "failed", settle_code="BANK_DECLINED"), accepted("a3"))
CLEAN_LEDGER = (settled("a1"), settled("a2", "failed"), settled("a3"))
ZERO = dict.fromkeys((*NAMES, *SETTLEMENT_NAMES), 0)


def report(hist: tuple[dict[str, Any], ...], led: pd.DataFrame) -> InvariantReport:
    return check(history(*hist), led, CARD_CAPS, USER_CAP)


def test_a_clean_async_run_has_no_violation_and_a_refused_settlement_is_no_money() -> None:
    found = report(CLEAN, async_ledger(*CLEAN_LEDGER))
    assert found.counts() == ZERO
    assert found.outcomes == {"ok": 2, "failed": 1, "unknown": 0}
    assert found.settlement and not found.unknown


def test_a_sync_run_makes_no_settlement_check() -> None:
    found = check(history(attempt("k1", 201, repayment_id="rp1")), ledger(record("k1", "rp1")),
                             CARD_CAPS, USER_CAP)  # fmt: skip
    assert set(found.counts()) == set(NAMES)


def test_one_payment_left_processing_is_stuck() -> None:
    found = report((*CLEAN, accepted("a4", "processing", final_at=0.0)), async_ledger(*CLEAN_LEDGER))
    assert found.counts() == {**ZERO, "stuck": 1}
    assert found.violations["stuck"][0]["key"] == "a4"


def test_a_payment_the_ledger_still_holds_processing_is_stuck() -> None:
    found = report((*CLEAN, accepted("a4", "unwatched", final_at=0.0)),
                   async_ledger(*CLEAN_LEDGER, settled("a4", "processing")))  # fmt: skip
    assert found.counts() == {**ZERO, "stuck": 1}


def test_an_unwatched_payment_without_ledger_status_leaves_stuck_unknown() -> None:
    plain = ledger(record("a1", "rp-a1"), record("a3", "rp-a3"))
    found = report((*CLEAN, accepted("a4", "unwatched", final_at=0.0)), plain)
    assert found.counts()["stuck"] == 0
    assert "stuck" in found.unknown


def test_a_later_poll_saying_otherwise_is_flipped() -> None:
    found = report((*CLEAN[:2], accepted("a3", flipped_to="failed")), async_ledger(*CLEAN_LEDGER))
    assert found.counts() == {**ZERO, "flipped": 1}
    assert found.violations["flipped"][0] == {"key": "a3", "payment_id": "p-a3", "amount_fen": 100_000,
                                              "learned": "succeeded", "then": "failed"}  # fmt: skip


def test_a_ledger_disagreeing_with_what_the_client_learned_is_flipped() -> None:
    led = async_ledger(settled("a1"), settled("a2", "succeeded"), settled("a3"))
    found = report(CLEAN, led)
    assert found.counts() == {**ZERO, "flipped": 1, "phantom": 1}, "told failed, money moved: also a phantom"
    assert found.violations["flipped"][0]["key"] == "a2"


def test_one_key_settled_twice() -> None:
    found = report(CLEAN, async_ledger(*CLEAN_LEDGER, settled("a3")))
    assert found.counts() == {**ZERO, "double_settled": 1, "duplicate": 1}
    assert found.violations["double_settled"][0] == {"key": "a3", "payment_id": "p-a3", "amount_fen": 100_000,
                                                     "settled_rows": 2}  # fmt: skip


def test_a_failed_row_next_to_a_settled_one_is_not_settled_twice() -> None:
    assert report(CLEAN, async_ledger(*CLEAN_LEDGER, settled("a3", "failed"))).counts() == ZERO


def test_a_callback_delivering_the_wrong_state_is_a_mismatch() -> None:
    row = accepted("a3", settlement="succeeded", callback_status="failed")
    found = report((*CLEAN[:2], row), async_ledger(*CLEAN_LEDGER))
    assert found.counts() == {**ZERO, "callback_mismatch": 1}


def test_an_accepted_payment_learned_succeeded_but_absent_is_lost() -> None:
    found = report(CLEAN, async_ledger(*CLEAN_LEDGER[:2]))
    assert found.counts() == {**ZERO, "lost": 1}


def test_a_pending_row_is_no_money_for_the_caps() -> None:
    big = check(
        history(*CLEAN, accepted("a4", "processing", final_at=0.0, amount_fen=4_900_000)),
        async_ledger(*CLEAN_LEDGER, {**settled("a4", "processing"), "amount_fen": 4_900_000}),
        CARD_CAPS,
        USER_CAP,
    )
    assert big.counts()["over_cap"] == 0 and big.counts()["stuck"] == 1


def test_the_report_names_a_stuck_payment_with_what_the_client_learned_and_the_ledger_holds() -> None:
    hist = history(*CLEAN, accepted("a4", "processing", final_at=0.0))
    led = async_ledger(*CLEAN_LEDGER, settled("a4", "processing"))
    found = check(hist, led, CARD_CAPS, USER_CAP)
    [told], more = violations.describe(found.violations, hist, led)
    assert more == 0 and (told.invariant, told.key, told.amount_fen) == ("stuck", "a4", 100_000)
    assert told.client_saw.startswith("client learned processing; ledger says processing: 202")


def timed_out(key: str, settlement: str = "", **settle: Any) -> dict[str, Any]:
    """A POST the client timed out on (no 202 read), whose row a kept callback may have given a final state."""
    return {**accepted(key, settlement, **settle), "status": 0, "code": "TIMEOUT", "outcome": "error",
            "repayment_id": ""}  # fmt: skip


def test_a_timed_out_post_learned_by_callback_is_judged_by_it_not_stuck_nor_phantom() -> None:
    hist = (*CLEAN, timed_out("t1", "succeeded", callback_status="succeeded"), timed_out("t2"))
    found = report(hist, async_ledger(*CLEAN_LEDGER, settled("t1"), settled("t2")))
    assert found.counts() == ZERO, "t2 timed out and never learned: unknown, so its ledger row is no phantom"
    assert found.outcomes == {"ok": 3, "failed": 1, "unknown": 1}


def test_a_timed_out_post_whose_callback_said_succeeded_is_lost_when_the_ledger_lacks_it() -> None:
    found = report((*CLEAN, timed_out("t1", "succeeded", callback_status="succeeded")), async_ledger(*CLEAN_LEDGER))
    assert found.counts() == {**ZERO, "lost": 1}
    assert found.violations["lost"][0]["key"] == "t1"
