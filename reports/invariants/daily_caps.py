"""over_cap, and the one place reports compute the daily cap in force on a business day.

A card's total on a business day may not pass its channel's `card_daily_fen`, nor a user's `user_daily_fen`. With
dynamic limits (`[[limits.schedule]]`) a day's cap is the highest in force at any moment of it: the gateway checks
each charge against the cap of its moment, so a day's total may legitimately reach a cap lowered later. The
gateway computes the caps of a moment itself (`GatewayConfig.money_caps`); reports may not import the gateway,
so tests/reports/test_daily_caps.py checks that the two agree. Totals are summed over integer codes: string
group-bys are slow at a million rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from reports.invariants.evidence import Codes, factorize
from runfolder.clock import SHANGHAI


@dataclass(frozen=True, slots=True)
class DailyTotals:
    """Amount recorded per card and per user per business day: what the caps bound (and the daily-cap view reads)."""

    per_card: pd.DataFrame  # card_id, channel, business_date, amount_fen
    per_user: pd.DataFrame  # user_id, business_date, amount_fen


def daily_totals(rows: pd.DataFrame) -> DailyTotals:
    """`rows`: recorded repayments with card_id, channel, user_id, business_date, amount_fen (the ledger, or the
    acknowledged attempts when there is none)."""
    codebook: dict[str, tuple[Codes, pd.Index]] = {}
    return DailyTotals(
        per_card=_totals(rows, ["card_id", "channel", "business_date"], codebook),
        per_user=_totals(rows, ["user_id", "business_date"], codebook),
    )


def _totals(rows: pd.DataFrame, columns: list[str], codebook: dict[str, tuple[Codes, pd.Index]]) -> pd.DataFrame:
    """Sum of amount_fen per combination of `columns`, via integer codes; `codebook` keeps each column's
    factorisation for the next call."""
    for column in columns:
        if column not in codebook:
            codebook[column] = factorize(rows[column])
    combined = np.zeros(len(rows), dtype=np.int64)
    for column in columns:
        codes, names = codebook[column]
        combined = combined * max(len(names), 1) + codes
    group, unique = pd.factorize(combined)
    totals = np.zeros(len(unique), dtype=np.int64)
    np.add.at(totals, group, rows["amount_fen"].to_numpy(np.int64))
    result = {}
    remaining = np.asarray(unique, dtype=np.int64)
    for column in reversed(columns):
        names = codebook[column][1]
        radix = max(len(names), 1)
        result[column] = names[remaining % radix]
        remaining = remaining // radix
    return pd.DataFrame({**{column: result[column] for column in columns}, "amount_fen": totals})


@dataclass(frozen=True, slots=True)
class CapOverride:
    """One `[[limits.schedule]]` entry of the gateway config: daily caps in force in [start, end)."""

    start: datetime
    end: datetime
    card_daily_fen: int | None = None
    user_daily_fen: int | None = None

    @classmethod
    def from_config(cls, entry: dict[str, Any]) -> CapOverride:
        card, user = entry.get("card_daily_fen"), entry.get("user_daily_fen")
        return cls(
            start=datetime.fromisoformat(str(entry["from"])),
            end=datetime.fromisoformat(str(entry["until"])),
            card_daily_fen=None if card is None else int(card),
            user_daily_fen=None if user is None else int(user),
        )


Schedule = Sequence[CapOverride]


def cap_on_day(day: str, base: int, schedule: Schedule, scope: str) -> int:
    """The highest `scope` ("card" or "user") cap in force at any moment of business day `day` (Asia/Shanghai):
    the day is cut at every override boundary inside it, and in each piece the last override covering it wins
    (as in the gateway), else the configured `base`."""
    start = datetime.combine(date.fromisoformat(day), time(0), SHANGHAI)
    end = start + timedelta(days=1)
    cuts = sorted({start, end} | {edge for o in schedule for edge in (o.start, o.end) if start < edge < end})
    highest = 0
    for piece_start, piece_end in itertools.pairwise(cuts):
        value = base
        for override in schedule:
            scheduled = override.card_daily_fen if scope == "card" else override.user_daily_fen
            if scheduled is not None and override.start <= piece_start and piece_end <= override.end:
                value = scheduled
        highest = max(highest, value)
    return highest


def card_caps_on_days(
    channels: pd.Series, days: pd.Series, card_caps: dict[str, int], schedule: Schedule = ()
) -> npt.NDArray[np.float64]:
    """The card cap in force per (channel, business day) row; NaN where the channel's cap is unknown."""
    if not schedule:
        return np.asarray(channels.map(card_caps).to_numpy(np.float64, na_value=np.nan), dtype=np.float64)
    pairs = pd.DataFrame({"channel": channels.to_numpy(), "business_date": days.to_numpy()})
    unique = pairs.drop_duplicates()
    unique = unique.assign(
        cap=[
            float(cap_on_day(str(day), card_caps[str(code)], schedule, "card")) if str(code) in card_caps else np.nan
            for code, day in zip(unique["channel"], unique["business_date"], strict=True)
        ]
    )
    return pairs.merge(unique, how="left", on=["channel", "business_date"])["cap"].to_numpy(np.float64)


def find_over_cap(
    totals: DailyTotals, card_caps: dict[str, int], user_cap: int | None, schedule: Schedule = ()
) -> list[dict[str, Any]]:
    """Business days on which a card or a user was charged more than the cap in force that day."""
    per_card = totals.per_card.assign(
        cap=card_caps_on_days(totals.per_card["channel"], totals.per_card["business_date"], card_caps, schedule)
    )
    over = per_card[per_card["cap"].notna() & (per_card["amount_fen"] > per_card["cap"])]
    found = [
        {"scope": "card", "id": str(card), "business_date": str(day), "total_fen": int(total), "cap_fen": int(cap)}
        for card, day, total, cap in zip(
            over["card_id"], over["business_date"], over["amount_fen"], over["cap"], strict=True
        )
    ]
    if user_cap is not None:
        per_user = totals.per_user
        day_caps = {day: cap_on_day(str(day), user_cap, schedule, "user") for day in per_user["business_date"].unique()}
        caps = per_user["business_date"].map(day_caps).astype("int64")
        over_user = per_user.assign(cap=caps)[per_user["amount_fen"] > caps]
        found += [
            {"scope": "user", "id": str(user), "business_date": str(day), "total_fen": int(total), "cap_fen": int(cap)}
            for user, day, total, cap in zip(
                over_user["user_id"], over_user["business_date"], over_user["amount_fen"], over_user["cap"], strict=True
            )
        ]
    return found
