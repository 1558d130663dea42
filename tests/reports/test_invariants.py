"""Each checker on hand-made histories holding exactly one violation of its kind, and on clean ones."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from reports.frames import LEDGER_COLUMNS
from reports.invariants.check import check
from reports.invariants.daily_caps import CapOverride, cap_on_day
from runfolder.history import HISTORY_COLUMNS

CARD_CAPS = {"ICBC": 5_000_000}
USER_CAP = 8_000_000
DAY = "2026-11-11"


def attempt(
    key: str,
    status: int,
    *,
    repayment_id: str = "",
    code: str = "",
    amount: int = 100_000,
    payment: str | None = None,
    part: int = 0,
    card: str = "c1",
    user: str = "u1",
) -> dict[str, Any]:
    outcome = {201: "succeeded", 422: "declined", 429: "rate_limited", 503: "shed", 409: "shed"}.get(status, "error")
    if status == 0:
        outcome = "timeout" if code == "TIMEOUT" else "error"
    return {
        "payment_id": payment or f"p-{key}",
        "key": key,
        "attempt": 1,
        "user_id": user,
        "card_id": card,
        "channel": "ICBC",
        "amount_fen": amount,
        "intended": 1.0,
        "sent": 1.0,
        "done": 1.1,
        "status": status,
        "code": code,
        "outcome": outcome,
        "repayment_id": repayment_id,
        "replica": "r1" if status else "",
        "business_date": DAY if status == 201 else "",
        "replayed": False,
        "part": part,
    }


def record(
    key: str, repayment_id: str, *, amount: int = 100_000, card: str = "c1", user: str = "u1", day: str = DAY
) -> dict[str, Any]:
    return {
        "repayment_id": repayment_id,
        "idempotency_key": key,
        "user_id": user,
        "card_id": card,
        "channel": "ICBC",
        "amount_fen": amount,
        "business_date": day,
        "replica": "r1",
        "created_at": f"{day}T10:00:00+08:00",
    }


def history(*rows: dict[str, Any]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=HISTORY_COLUMNS)
    for name in (
        "payment_id",
        "key",
        "user_id",
        "card_id",
        "channel",
        "code",
        "outcome",
        "repayment_id",
        "replica",
        "business_date",
    ):
        frame[name] = frame[name].astype("string")
    return frame


def ledger(*rows: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=LEDGER_COLUMNS)


def counts(hist: pd.DataFrame, led: pd.DataFrame) -> dict[str, int]:
    return check(hist, led, CARD_CAPS, USER_CAP).counts()


CLEAN_HISTORY = (
    attempt("k1", 201, repayment_id="rp1"),
    attempt("k2", 429, code="RATE_LIMITED"),
    attempt("k2", 201, repayment_id="rp2"),
    attempt("k3", 422, code="DAILY_LIMIT_EXCEEDED"),
    attempt("k4", 503, code="CHANNEL_BUSY"),
)
CLEAN_LEDGER = (record("k1", "rp1"), record("k2", "rp2"))
NONE = {"lost": 0, "phantom": 0, "duplicate": 0, "over_cap": 0}


def test_a_clean_history_has_no_violation() -> None:
    assert counts(history(*CLEAN_HISTORY), ledger(*CLEAN_LEDGER)) == NONE
    report = check(history(*CLEAN_HISTORY), ledger(*CLEAN_LEDGER), CARD_CAPS, USER_CAP)
    assert report.outcomes == {"ok": 2, "failed": 2, "unknown": 0}


@pytest.mark.parametrize("recorded", [True, False], ids=["in-ledger", "not-in-ledger"])
def test_a_timed_out_attempt_may_or_may_not_be_in_the_ledger(recorded: bool) -> None:
    hist = history(*CLEAN_HISTORY, attempt("k5", 0, code="TIMEOUT"), attempt("k6", 0, code="CONNECTION_ERROR"))
    rows = [*CLEAN_LEDGER, record("k5", "rp5")] if recorded else list(CLEAN_LEDGER)
    assert counts(hist, ledger(*rows)) == NONE
    report = check(hist, ledger(*rows), CARD_CAPS, USER_CAP)
    assert report.outcomes["unknown"] == 2


def test_a_timeout_then_a_replayed_success_is_fine() -> None:
    hist = history(*CLEAN_HISTORY, attempt("k5", 0, code="TIMEOUT"), attempt("k5", 201, repayment_id="rp5"))
    assert counts(hist, ledger(*CLEAN_LEDGER, record("k5", "rp5"))) == NONE


def test_one_lost_repayment() -> None:
    hist = history(*CLEAN_HISTORY, attempt("k9", 201, repayment_id="rp9"))
    report = check(hist, ledger(*CLEAN_LEDGER), CARD_CAPS, USER_CAP)
    assert report.counts() == {**NONE, "lost": 1}
    assert report.violations["lost"][0]["repayment_id"] == "rp9"


def test_an_acknowledgement_pointing_at_another_id_is_lost() -> None:
    hist = history(*CLEAN_HISTORY, attempt("k9", 201, repayment_id="rp9"))
    assert counts(hist, ledger(*CLEAN_LEDGER, record("k9", "rp-other"))) == {**NONE, "lost": 1}


@pytest.mark.parametrize(
    ("extra_history", "reason"),
    [((), "never attempted"), ((attempt("k9", 503, code="CHANNEL_BUSY"),), "client was told it failed")],
)
def test_one_phantom_repayment(extra_history: tuple[dict[str, Any], ...], reason: str) -> None:
    hist = history(*CLEAN_HISTORY, *extra_history)
    report = check(hist, ledger(*CLEAN_LEDGER, record("k9", "rp9")), CARD_CAPS, USER_CAP)
    assert report.counts() == {**NONE, "phantom": 1}
    assert report.violations["phantom"][0]["reason"] == reason


def test_one_key_recorded_twice() -> None:
    assert counts(history(*CLEAN_HISTORY), ledger(*CLEAN_LEDGER, record("k1", "rp1-again"))) == {
        **NONE,
        "duplicate": 1,
        "lost": 0,
    }


def test_one_key_acknowledged_with_two_ids() -> None:
    hist = history(*CLEAN_HISTORY, attempt("k1", 201, repayment_id="rp1-b"))
    report = check(hist, ledger(*CLEAN_LEDGER), CARD_CAPS, USER_CAP)
    assert report.counts()["duplicate"] == 1
    assert report.violations["duplicate"][0]["kind"] == "key acknowledged with two ids"


def test_one_payment_charged_under_two_keys() -> None:
    hist = history(
        *CLEAN_HISTORY,
        attempt("k7a", 0, code="TIMEOUT", payment="p7"),
        attempt("k7b", 201, repayment_id="rp7b", payment="p7"),
    )
    report = check(hist, ledger(*CLEAN_LEDGER, record("k7a", "rp7a"), record("k7b", "rp7b")), CARD_CAPS, USER_CAP)
    assert report.counts() == {**NONE, "duplicate": 1}
    assert report.violations["duplicate"][0]["kind"] == "payment part recorded under two keys"


def test_plan_parts_of_one_payment_are_not_duplicates() -> None:
    hist = history(
        *CLEAN_HISTORY,
        attempt("k8-1", 201, repayment_id="rp81", payment="p8", part=1),
        attempt("k8-2", 201, repayment_id="rp82", payment="p8", part=2),
    )
    assert counts(hist, ledger(*CLEAN_LEDGER, record("k8-1", "rp81"), record("k8-2", "rp82"))) == NONE


def test_one_card_over_its_daily_cap() -> None:
    big = 2_500_000
    hist = history(
        *CLEAN_HISTORY,
        *(attempt(f"kb{n}", 201, repayment_id=f"rb{n}", amount=big, card="c2", user=f"u-{n}") for n in range(3)),
    )
    rows = [record(f"kb{n}", f"rb{n}", amount=big, card="c2", user=f"u-{n}") for n in range(3)]
    report = check(hist, ledger(*CLEAN_LEDGER, *rows), CARD_CAPS, USER_CAP)
    assert report.counts() == {**NONE, "over_cap": 1}
    assert report.violations["over_cap"][0] == {
        "scope": "card",
        "id": "c2",
        "business_date": DAY,
        "total_fen": 7_500_000,
        "cap_fen": 5_000_000,
    }


def test_one_user_over_the_platform_cap_across_cards() -> None:
    amount = 3_000_000
    cards = ("c3", "c4", "c5")
    hist = history(
        *CLEAN_HISTORY,
        *(attempt(f"ku{c}", 201, repayment_id=f"ru{c}", amount=amount, card=c, user="u9") for c in cards),
    )
    rows = [record(f"ku{c}", f"ru{c}", amount=amount, card=c, user="u9") for c in cards]
    report = check(hist, ledger(*CLEAN_LEDGER, *rows), CARD_CAPS, USER_CAP)
    assert report.counts() == {**NONE, "over_cap": 1}
    assert report.violations["over_cap"][0]["scope"] == "user"


def test_caps_are_per_business_day() -> None:
    amount = 3_000_000
    days = ("2026-11-11", "2026-11-12")
    hist = history(
        *CLEAN_HISTORY, *(attempt(f"kd{d}", 201, repayment_id=f"rd{d}", amount=amount, card="c6") for d in days)
    )
    rows = [record(f"kd{d}", f"rd{d}", amount=amount, card="c6", day=d) for d in days]
    assert counts(hist, ledger(*CLEAN_LEDGER, *rows)) == NONE


def foreign(key: str, status: int, outcome: str, *, payment_no: str = "", code: str = "") -> dict[str, Any]:
    """An attempt against a target profile: the target's own status, the outcome its rules gave."""
    return {**attempt(key, status, code=code), "outcome": outcome, "repayment_id": payment_no}


def test_foreign_histories_are_judged_by_outcome_class_and_lost_by_key() -> None:
    hist = history(
        foreign("k1", 200, "succeeded", payment_no="P1"),  # acknowledged; its ledger row carries another id
        foreign("k2", 200, "succeeded", payment_no="P2"),  # acknowledged, missing: lost
        foreign("k3", 200, "declined", code="DAILY_LIMIT_EXCEEDED"),  # refused at 200, yet recorded: phantom
        foreign("k4", 503, "shed"),  # a foreign 503 may have run: recorded is fine
    )
    led = ledger(record("k1", "row-1"), record("k3", "row-2"), record("k4", "row-3"))
    report = check(hist, led, CARD_CAPS, USER_CAP, foreign=True)
    assert report.counts() == {"lost": 1, "phantom": 1, "duplicate": 0, "over_cap": 0}
    assert report.violations["lost"][0]["key"] == "k2"
    assert report.violations["phantom"][0]["key"] == "k3"
    # read as a §3 history, the same rows mean something else: no 201 anywhere, so nothing was acknowledged
    assert check(hist, led, CARD_CAPS, USER_CAP).counts()["lost"] == 0


FESTIVAL = CapOverride(
    start=datetime.fromisoformat("2026-11-11T00:00:00+08:00"),
    end=datetime.fromisoformat("2026-11-12T00:00:00+08:00"),
    card_daily_fen=10_000_000,
    user_daily_fen=12_000_000,
)


def test_over_cap_uses_the_cap_in_force_on_that_business_day() -> None:
    """7,500,000 on one card: within the festival day's raised cap, over the normal cap the day after."""
    days = ("2026-11-11", "2026-11-12")
    keys = [(f"kf{d}{i}", d) for d in days for i in range(3)]
    hist = history(
        *CLEAN_HISTORY, *(attempt(k, 201, repayment_id=f"r{k}", amount=2_500_000, card="c7") for k, _ in keys)
    )
    rows = [record(k, f"r{k}", amount=2_500_000, card="c7", day=d) for k, d in keys]
    report = check(hist, ledger(*CLEAN_LEDGER, *rows), CARD_CAPS, USER_CAP, schedule=[FESTIVAL])
    assert report.counts() == {**NONE, "over_cap": 1}
    assert report.violations["over_cap"][0] == {
        "scope": "card",
        "id": "c7",
        "business_date": "2026-11-12",
        "total_fen": 7_500_000,
        "cap_fen": 5_000_000,
    }
    without_schedule = check(hist, ledger(*CLEAN_LEDGER, *rows), CARD_CAPS, USER_CAP)
    assert without_schedule.counts()["over_cap"] == 2


def test_a_day_partly_raised_is_bounded_by_its_highest_cap() -> None:
    morning = CapOverride(FESTIVAL.start, FESTIVAL.start + timedelta(hours=12), user_daily_fen=9_000_000)
    assert cap_on_day("2026-11-11", USER_CAP, [morning], "user") == 9_000_000
    assert cap_on_day("2026-11-11", USER_CAP, [morning], "card") == USER_CAP
    assert cap_on_day("2026-11-12", USER_CAP, [morning], "user") == USER_CAP
    lowered = CapOverride(FESTIVAL.start, FESTIVAL.end, user_daily_fen=1_000)
    assert cap_on_day("2026-11-11", USER_CAP, [lowered], "user") == 1_000  # the whole day lowered
