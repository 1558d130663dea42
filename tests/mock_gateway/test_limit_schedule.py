"""Dynamic limits (`[[limits.schedule]]`): overrides in force between `from` and `until` on the gateway clock,
applied at the moment of the charge and shown by GET /v1/users/{id}/limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mock_gateway.cluster.events import EventLog, RouterMetrics
from mock_gateway.cluster.router import Router, RouterSettings
from mock_gateway.config_sources import load_config
from mock_gateway.errors import ConfigError
from tests.mock_gateway.conftest import ManualWall
from tests.mock_gateway.replica.test_daily_caps import fast_clock, pay

FESTIVAL = {
    "from": "2026-11-11T00:00:00+08:00",
    "until": "2026-11-12T00:00:00+08:00",
    "card_daily_fen": 10_000_000,
    "user_daily_fen": 40_000_000,
}


async def limits_of(client: Any, user: str = "u1") -> dict[str, Any]:
    response = await client.get(f"/v1/users/{user}/limits")
    assert response.status == 200
    data: dict[str, Any] = await response.json()
    return data


async def test_raised_caps_hold_only_between_from_and_until(make_config: Any, make_client: Any) -> None:
    wall = ManualWall()
    client = await make_client(
        make_config(limits={"schedule": [FESTIVAL]}), clock=fast_clock("2026-11-10T22:00:00+08:00", wall)
    )
    assert (await pay(client, "eve-1", amount=5_000_000)).status == 201
    declined = await pay(client, "eve-2", amount=100)
    assert declined.status == 422
    assert (await declined.json())["limit_fen"] == 5_000_000
    eve = await limits_of(client)
    assert (eve["user"]["limit_fen"], eve["cards"][0]["limit_fen"]) == (20_000_000, 5_000_000)

    wall.advance(10)  # 22:00 + 240 simulated minutes: the festival day
    festival = await limits_of(client)
    assert festival["business_date"] == "2026-11-11"
    assert (festival["user"]["limit_fen"], festival["cards"][0]["limit_fen"]) == (40_000_000, 10_000_000)
    assert (await pay(client, "day-1", amount=5_000_000)).status == 201
    assert (await pay(client, "day-2", amount=5_000_000)).status == 201
    over = await pay(client, "day-3", amount=100)
    assert over.status == 422
    assert (await over.json())["limit_fen"] == 10_000_000

    wall.advance(60)  # the day after: back to the configured caps
    after = await limits_of(client)
    assert after["business_date"] == "2026-11-12"
    assert after["cards"][0]["limit_fen"] == 5_000_000


async def test_the_cap_is_the_one_in_force_at_the_moment_of_the_charge(make_config: Any, make_client: Any) -> None:
    """Raised until noon: 8,000,000 at 10:00 fits; after noon the card's day is over the normal cap, so even a
    small payment is declined and the limits show nothing left."""
    morning = dict(FESTIVAL, until="2026-11-11T12:00:00+08:00")
    wall = ManualWall()
    client = await make_client(
        make_config(limits={"schedule": [morning]}), clock=fast_clock("2026-11-11T10:00:00+08:00", wall)
    )
    assert (await pay(client, "a", amount=4_000_000)).status == 201
    assert (await pay(client, "b", amount=4_000_000)).status == 201
    wall.advance(6)  # 12:24
    afternoon = await pay(client, "c", amount=100)
    assert afternoon.status == 422
    card = (await limits_of(client))["cards"][0]
    assert (card["limit_fen"], card["used_fen"], card["remaining_fen"]) == (5_000_000, 8_000_000, 0)


def test_a_schedule_entry_names_its_mistakes() -> None:
    def error(entry: dict[str, Any]) -> str:
        with pytest.raises(ConfigError) as caught:
            load_config(None, env={}, overrides={"limits": {"schedule": [entry]}})
        return str(caught.value)

    assert "'limits.schedule.0': 'until' must be after 'from'" in error(dict(FESTIVAL, until=FESTIVAL["from"]))
    assert error(dict(FESTIVAL, concurrency=9)) == "unknown key 'limits.schedule.0.concurrency'"
    assert error(dict(FESTIVAL, user_tps=0)) == "'limits.schedule.0.user_tps' must be > 0 (got 0)"
    assert error({"until": FESTIVAL["until"], "user_daily_fen": 1}) == "missing key 'limits.schedule.0.from'"
    assert "must carry a UTC offset" in error(dict(FESTIVAL, until="2026-11-12T00:00:00"))
    assert "at least one of" in error({"from": FESTIVAL["from"], "until": FESTIVAL["until"]})


def test_the_schedule_reaches_the_public_config_under_its_own_key_names() -> None:
    config = load_config(None, env={}, overrides={"limits": {"schedule": [FESTIVAL]}})
    entry = config.public_dict()["limits"]["schedule"][0]
    assert entry["from"] == "2026-11-11T00:00:00+08:00"
    assert load_config(None, env={}, overrides={"limits": config.public_dict()["limits"]}).limits == config.limits


async def test_a_scheduled_rate_holds_in_its_window_only(make_config: Any, make_client: Any) -> None:
    """A lone replica applies the per-user cap itself: 1/s during the window, the quiet 1,000,000/s outside."""
    window = {"from": FESTIVAL["from"], "until": "2026-11-11T01:00:00+08:00", "user_tps": 1}
    wall = ManualWall()
    client = await make_client(
        make_config(limits={"schedule": [window]}), clock=fast_clock("2026-11-10T23:50:00+08:00", wall)
    )
    assert [(await pay(client, f"before-{i}", amount=100)).status for i in range(3)] == [201, 201, 201]
    wall.advance(1)  # 00:14 on the festival day: inside the window
    inside = [(await pay(client, f"inside-{i}", amount=100)).status for i in range(3)]
    assert inside[0] == 201 and 429 in inside[1:]
    wall.advance(3)  # 01:26: the window has closed
    assert [(await pay(client, f"after-{i}", amount=100)).status for i in range(3)] == [201, 201, 201]


def test_the_router_switches_its_rates_on_the_replicas_clock(tmp_path: Path) -> None:
    window = {"from": FESTIVAL["from"], "until": FESTIVAL["until"], "global_tps": 1, "user_tps": 1000}
    config = load_config(None, env={}, overrides={"limits": {"schedule": [window]}})
    wall = ManualWall()
    settings = RouterSettings.from_config(config, fast_clock("2026-11-10T23:00:00+08:00", wall))
    assert settings.rates_now is not None
    assert settings.rates_now().global_tps == 5000
    with EventLog(tmp_path / "events.jsonl", RouterMetrics()) as events:
        router = Router(settings, {"r1": 1}, "127.0.0.1", events)
        assert [router.admission.admit(f"u{i}") for i in range(3)] == [None, None, None]
        wall.advance(5)  # 01:00 on the festival day
        assert settings.rates_now().global_tps == 1
        refusals = [router.admission.admit(f"v{i}") for i in range(3)]
        assert refusals[0] is None and refusals[1] is not None and refusals[1].scope == "global"
    assert RouterSettings.from_config(load_config(None, env={})).rates_now is None  # no clock read per request
