"""The caps a run met, read from the config it used, and the money per business day measured against them.

Every money figure counts this run's own rows of the ledger when it has one (a ledger shared with other runs holds
theirs too), else its acknowledged attempts; the caps count every charge of a card's day, whoever made it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reports.frames import RunFrames
from reports.invariants.daily_caps import CapOverride, DailyTotals, cap_on_day, card_caps_on_days, daily_totals
from reports.invariants.evidence import own_rows
from runfolder.clock import SHANGHAI, ClusterClock
from runfolder.models import RunMeta


def business_dates(unix: pd.Series, clock: ClusterClock | None) -> pd.Series:
    """The gateway's business date (Asia/Shanghai, on its possibly fast simulated clock) of each wall time;
    without a clock, real time."""
    simulated = unix if clock is None else clock.sim_unix(unix)
    stamps = pd.to_datetime(simulated, unit="s", utc=True).dt.tz_convert(SHANGHAI)
    return stamps.dt.strftime("%Y-%m-%d")


def is_foreign(meta: RunMeta) -> bool:
    """Whether the run drove a target profile's API (docs/targets.md) rather than the §3 gateway."""
    return meta.target is not None


def caps(meta: RunMeta) -> tuple[dict[str, int], int | None]:
    """Card caps per channel code and the user cap, from the gateway config the run used (None: unknown); for a
    target profile, its `[ledger.caps]` (one card cap for every channel the cards were drawn on)."""
    if meta.target is not None:
        limits = meta.target.caps
        card_cap = None if limits is None else limits.card_daily_fen
        user = None if limits is None else limits.user_daily_fen
        return ({} if card_cap is None else dict.fromkeys(meta.target.channels, card_cap)), user
    config = meta.gateway_config or {}
    card = {
        str(channel["code"]): int(channel["card_daily_fen"])
        for channel in config.get("channels") or []
        if "code" in channel and "card_daily_fen" in channel
    }
    user = (config.get("limits") or {}).get("user_daily_fen")
    return card, None if user is None else int(user)


def cap_schedule(meta: RunMeta) -> tuple[CapOverride, ...]:
    """The dynamic limits (`limits.schedule`) of the gateway config the run used; empty when none or unknown."""
    limits = (meta.gateway_config or {}).get("limits") or {}
    return tuple(CapOverride.from_config(entry) for entry in limits.get("schedule") or [])


def caps_by_day(meta: RunMeta, days: list[str]) -> list[dict[str, Any]]:
    """Per business day, the user cap and each channel's card cap in force (the highest of the day), for the
    report's daily-caps section; empty when the gateway config is unknown."""
    card_caps, user_cap = caps(meta)
    schedule = cap_schedule(meta)
    return [
        {
            "business_date": day,
            "user_daily_fen": None if user_cap is None else cap_on_day(day, user_cap, schedule, "user"),
            "card_daily_fen": {code: cap_on_day(day, cap, schedule, "card") for code, cap in sorted(card_caps.items())},
        }
        for day in days
    ]


def repaid_per_day(frames: RunFrames) -> pd.DataFrame:
    """Amount and count of this run's repayments per business day: from its rows of the ledger (the truth) when
    the run has one, else from the acknowledged attempts of the history (one per repayment id)."""
    grouped = recorded_repayments(frames).groupby("business_date")["amount_fen"].agg(["sum", "count"])
    return grouped.rename(columns={"sum": "amount_fen", "count": "repayments"}).astype("int64").sort_index()


def recorded_repayments(frames: RunFrames) -> pd.DataFrame:
    """This run's repayments, what every money figure counts: its own rows of the ledger (its key prefix, as
    the invariants use) when the run has one — a ledger shared with other runs holds theirs too — else the
    acknowledged attempts (one per repayment id)."""
    if frames.ledger is not None:
        return own_rows(frames.ledger, frames.meta.key_prefix)
    return _acknowledged(frames)


def charges_per_day(frames: RunFrames) -> DailyTotals:
    """Every charge the caps counted, per card and per user and day: the whole ledger (a cap bounds every
    charge of a card's day, whoever made it), else this run's acknowledged attempts."""
    charges = frames.ledger if frames.ledger is not None else _acknowledged(frames)
    return daily_totals(charges)


def _acknowledged(frames: RunFrames) -> pd.DataFrame:
    acked = frames.history[frames.history["outcome"] == "succeeded"]  # a 201, or a target's rule said so
    return acked.drop_duplicates("repayment_id")


def declines_by_scope(frames: RunFrames, per_card_day: pd.DataFrame) -> pd.DataFrame:
    """Limit declines per business day and scope (`single`, `card`, `user`), one per payment key.

    History rows carry the code but not the problem's `scope`, so a DAILY_LIMIT_EXCEEDED is attributed to the
    card when the card's total that day (`per_card_day`: card_id, business_date, amount_fen) plus the declined
    amount passes the card cap, else to the user.
    """
    history = frames.history
    declines = history[history["code"].isin(["SINGLE_LIMIT_EXCEEDED", "DAILY_LIMIT_EXCEEDED"])]
    declines = declines.drop_duplicates("key")
    if declines.empty:
        return pd.DataFrame(columns=["single", "card", "user"], dtype="int64")
    days = declines["business_date"].where(
        declines["business_date"] != "",
        business_dates(declines["done"], frames.clock),
    )
    card_caps, _ = caps(frames.meta)
    day_caps = card_caps_on_days(declines["channel"], days, card_caps, cap_schedule(frames.meta))
    keyed = pd.DataFrame(
        {
            "card_id": declines["card_id"].to_numpy(),
            "business_date": days.to_numpy(),
            "amount_fen": declines["amount_fen"].to_numpy(np.int64),
            "code": declines["code"].to_numpy(),
            "cap": np.nan_to_num(day_caps, nan=np.inf),
        }
    )
    keyed = keyed.merge(
        per_card_day.groupby(["card_id", "business_date"])["amount_fen"].sum().reset_index(),
        how="left",
        on=["card_id", "business_date"],
        suffixes=("", "_repaid"),
    )
    over_card = keyed["amount_fen"] + keyed["amount_fen_repaid"].fillna(0) > keyed["cap"]
    scope = np.where(keyed["code"] == "SINGLE_LIMIT_EXCEEDED", "single", np.where(over_card, "card", "user"))
    table = pd.crosstab(
        pd.Series(keyed["business_date"].to_numpy(), name="business_date"), pd.Series(scope, name="scope")
    )
    return table.reindex(columns=["single", "card", "user"], fill_value=0).astype("int64")
