"""Money invariants: pure checkers over the request history and a dump of the ledger's `repayments` table.

In the spirit of Jepsen's checkers, each idempotency key gets one outcome from what the clients saw:

    ok       some attempt got a 201: the gateway acknowledged the repayment
    failed   every attempt got an answer that guarantees nothing was recorded (400/413/415, 429, a 422 limit
             decline, a 503 shed before execution — CONTRACT §3)
    unknown  anything else: a timeout, a connection error, a 409 in flight, a 5xx. The repayment may or may not
             be in the ledger and both are correct.

and the checkers compare those outcomes with the ledger:

    lost       an acknowledged repayment is not in the ledger
    phantom    a ledger row whose key was never attempted, or whose every attempt was a definite failure
    duplicate  one key recorded twice, one key acknowledged with two repayment ids, or one payment part
               (payment_id, part) recorded under two keys: a user charged twice
    over_cap   a card's total on a business day above its channel's `card_daily_fen`, or a user's above
               `user_daily_fen`
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

DEFINITE_FAILURE_STATUSES = (400, 413, 415, 429, 503)
LIMIT_DECLINES = ("SINGLE_LIMIT_EXCEEDED", "DAILY_LIMIT_EXCEEDED")
NAMES = ("lost", "phantom", "duplicate", "over_cap")


@dataclass(frozen=True, slots=True)
class InvariantReport:
    """Violations by kind (each a list of small dicts naming the evidence) and key outcomes counted."""

    violations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {name: len(self.violations.get(name, [])) for name in NAMES}


def attempt_outcomes(history: pd.DataFrame) -> pd.Series:
    """Per attempt: `ok`, `failed` (definitely not recorded) or `unknown`."""
    status = history["status"].to_numpy()
    definite = np.isin(status, DEFINITE_FAILURE_STATUSES) | (
        (status == 422) & history["code"].isin(LIMIT_DECLINES).to_numpy()
    )
    return pd.Series(np.where(status == 201, "ok", np.where(definite, "failed", "unknown")), index=history.index)


def key_outcomes(history: pd.DataFrame) -> pd.Series:
    """Per idempotency key: ok if any attempt was acknowledged, else unknown if any attempt was, else failed."""
    if history.empty:
        return pd.Series(dtype="string")
    rank = attempt_outcomes(history).map({"failed": 0, "unknown": 1, "ok": 2})
    best = rank.groupby(history["key"].to_numpy()).max()
    return best.map({0: "failed", 1: "unknown", 2: "ok"})


def find_lost(history: pd.DataFrame, ledger: pd.DataFrame) -> list[dict[str, Any]]:
    """Acknowledged repayments the ledger does not hold (by repayment id when the 201 gave one, else by key)."""
    acked = history[history["status"] == 201].drop_duplicates("key")
    has_id = acked["repayment_id"] != ""
    missing = (has_id & ~acked["repayment_id"].isin(ledger["repayment_id"])) | (
        ~has_id & ~acked["key"].isin(ledger["idempotency_key"])
    )
    lost = acked[missing]
    return [
        {"key": str(key), "repayment_id": str(repayment_id), "amount_fen": int(amount)}
        for key, repayment_id, amount in zip(lost["key"], lost["repayment_id"], lost["amount_fen"], strict=True)
    ]


def find_phantom(history: pd.DataFrame, ledger: pd.DataFrame) -> list[dict[str, Any]]:
    """Ledger rows nobody asked for, or that every answer to the client said could not exist."""
    outcomes = key_outcomes(history)
    outcome = ledger["idempotency_key"].map(outcomes)
    phantom = ledger[outcome.isna() | (outcome == "failed")]
    return [
        {
            "key": str(row.idempotency_key),
            "repayment_id": str(row.repayment_id),
            "reason": "never attempted" if pd.isna(outcomes.get(row.idempotency_key)) else "client was told it failed",
        }
        for row in phantom.itertuples()
    ]


def find_duplicates(history: pd.DataFrame, ledger: pd.DataFrame) -> list[dict[str, Any]]:
    """Every way one payment can be recorded or acknowledged twice."""
    found: list[dict[str, Any]] = []
    per_key = ledger.groupby("idempotency_key").size()
    found += [
        {"kind": "key recorded twice", "key": str(key), "rows": int(n)} for key, n in per_key[per_key > 1].items()
    ]
    acked = history[(history["status"] == 201) & (history["repayment_id"] != "")]
    ids = acked.groupby("key")["repayment_id"].nunique()
    found += [
        {"kind": "key acknowledged with two ids", "key": str(key), "rows": int(n)} for key, n in ids[ids > 1].items()
    ]
    payment_of_key = history.drop_duplicates("key").set_index("key")[["payment_id", "part"]]
    recorded = ledger[["idempotency_key"]].join(payment_of_key, on="idempotency_key", how="inner")
    keys_per_part = recorded.groupby(["payment_id", "part"])["idempotency_key"].nunique().reset_index(name="n")
    twice = keys_per_part[keys_per_part["n"] > 1]
    found += [
        {"kind": "payment part recorded under two keys", "payment_id": str(payment), "part": int(part), "rows": int(n)}
        for payment, part, n in zip(twice["payment_id"], twice["part"], twice["n"], strict=True)
    ]
    return found


def find_over_cap(rows: pd.DataFrame, card_caps: dict[str, int], user_cap: int | None) -> list[dict[str, Any]]:
    """Business days on which a card or a user was charged more than its cap. `rows`: recorded repayments with
    card_id, channel, user_id, business_date, amount_fen (the ledger, or acknowledged attempts without one)."""
    found: list[dict[str, Any]] = []
    per_card = rows.groupby(["card_id", "channel", "business_date"])["amount_fen"].sum().reset_index()
    per_card["cap"] = per_card["channel"].map(card_caps)
    over = per_card[per_card["cap"].notna() & (per_card["amount_fen"] > per_card["cap"])]
    found += [
        {"scope": "card", "id": str(card), "business_date": str(day), "total_fen": int(total), "cap_fen": int(cap)}
        for card, day, total, cap in zip(
            over["card_id"], over["business_date"], over["amount_fen"], over["cap"], strict=True
        )
    ]
    if user_cap is not None:
        per_user = rows.groupby(["user_id", "business_date"])["amount_fen"].sum().reset_index()
        over = per_user[per_user["amount_fen"] > user_cap]
        found += [
            {"scope": "user", "id": str(user), "business_date": str(day), "total_fen": int(total), "cap_fen": user_cap}
            for user, day, total in zip(over["user_id"], over["business_date"], over["amount_fen"], strict=True)
        ]
    return found


def check(
    history: pd.DataFrame, ledger: pd.DataFrame, card_caps: dict[str, int], user_cap: int | None
) -> InvariantReport:
    """Run every checker over one history and one ledger dump."""
    outcomes = key_outcomes(history).value_counts()
    return InvariantReport(
        violations={
            "lost": find_lost(history, ledger),
            "phantom": find_phantom(history, ledger),
            "duplicate": find_duplicates(history, ledger),
            "over_cap": find_over_cap(ledger, card_caps, user_cap),
        },
        outcomes={name: int(outcomes.get(name, 0)) for name in ("ok", "failed", "unknown")},
    )
