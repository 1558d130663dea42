"""The cap in force on a business day, as reports compute it, agrees with the gateway's caps of each moment.

Reports may not import the gateway, so `reports.invariants.daily_caps.cap_on_day` recomputes from a run folder's
copy of the config (meta.json's `gateway_config`, `GatewayConfig.public_dict`) what `GatewayConfig.money_caps`
decides per charge: a day's cap is the highest in force at any moment of it. The gateway is asked every minute of
each day (every schedule edge below falls on a minute), so the two are computed independently.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

import pytest

from mock_gateway.config import GatewayConfig
from reports.invariants.daily_caps import CapOverride, cap_on_day
from runfolder.clock import SHANGHAI

DAYS = ("2026-11-10", "2026-11-11", "2026-11-12")
SCHEDULES: dict[str, list[dict[str, Any]]] = {
    "none": [],
    "festival raises both caps all day": [
        {
            "from": "2026-11-11T00:00:00+08:00",
            "until": "2026-11-12T00:00:00+08:00",
            "card_daily_fen": 9_000_000,
            "user_daily_fen": 30_000_000,
        },
    ],
    "morning raise, then back": [
        {"from": "2026-11-11T00:00:00+08:00", "until": "2026-11-11T12:00:00+08:00", "user_daily_fen": 40_000_000},
    ],
    "lowered all day": [
        {
            "from": "2026-11-11T00:00:00+08:00",
            "until": "2026-11-12T00:00:00+08:00",
            "card_daily_fen": 1_000,
            "user_daily_fen": 2_000,
        },
    ],
    "a later entry wins where two overlap": [
        {"from": "2026-11-11T00:00:00+08:00", "until": "2026-11-12T00:00:00+08:00", "card_daily_fen": 1_000_000},
        {"from": "2026-11-11T10:00:00+08:00", "until": "2026-11-11T14:00:00+08:00", "card_daily_fen": 8_000_000},
    ],
    "a lowering across midnight, a raise at noon": [
        {
            "from": "2026-11-10T20:00:00+08:00",
            "until": "2026-11-11T06:30:00+08:00",
            "card_daily_fen": 500_000,
            "user_daily_fen": 600_000,
        },
        {"from": "2026-11-11T11:59:00+08:00", "until": "2026-11-11T12:01:00+08:00", "user_daily_fen": 50_000_000},
    ],
    "edges in UTC, a single-only override": [
        {"from": "2026-11-11T02:00:00+00:00", "until": "2026-11-11T03:00:00+00:00", "card_daily_fen": 7_777_000},
        {"from": "2026-11-12T00:00:00+08:00", "until": "2026-11-13T00:00:00+08:00", "single_fen": 100},
    ],
}


def gateway_highest(config: GatewayConfig, day: str) -> dict[str, int]:
    """The gateway's caps asked at every minute of `day`: the highest card cap per channel and user cap."""
    start = datetime.combine(date.fromisoformat(day), time(0), SHANGHAI)
    highest: dict[str, int] = {}
    for minute in range(24 * 60):
        moment = start + timedelta(minutes=minute)
        for channel in config.channels:
            caps = config.money_caps(channel, moment)
            highest[channel.code] = max(highest.get(channel.code, 0), caps.card_daily_fen)
            highest["user"] = max(highest.get("user", 0), caps.user_daily_fen)
    return highest


@pytest.mark.parametrize("name", SCHEDULES)
def test_cap_on_day_agrees_with_the_gateway(name: str) -> None:
    config = GatewayConfig.model_validate({"limits": {"schedule": SCHEDULES[name]}})
    public = config.public_dict()  # what meta.json keeps and reports read
    schedule = [CapOverride.from_config(entry) for entry in public["limits"]["schedule"]]
    card_caps = {str(c["code"]): int(c["card_daily_fen"]) for c in public["channels"]}
    user_cap = int(public["limits"]["user_daily_fen"])
    assert len(card_caps) >= 2  # the default config: more than one channel, so card caps differ per channel
    for day in DAYS:
        reports = {code: cap_on_day(day, cap, schedule, "card") for code, cap in card_caps.items()}
        reports["user"] = cap_on_day(day, user_cap, schedule, "user")
        assert reports == gateway_highest(config, day), (name, day)
