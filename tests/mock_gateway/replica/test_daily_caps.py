"""Daily caps on the simulated clock, split plans, and the atomic cap check under concurrency (in-process)."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import date, datetime
from typing import Any

from mock_gateway.clock import SHANGHAI, SimClock
from tests.mock_gateway.conftest import ManualWall, body


def fast_clock(start: str, wall: ManualWall, speed: float = 1440) -> SimClock:
    return SimClock(speed=speed, start=datetime.fromisoformat(start), anchor_unix=wall.now, wall=wall)


async def pay(client: Any, key: str, **fields: Any) -> Any:
    return await client.post("/v1/repayments", json=body(**fields), headers={"Idempotency-Key": key})


async def test_card_quota_resets_at_shanghai_midnight_not_utc(make_config: Any, make_client: Any) -> None:
    wall = ManualWall()
    # 07:30 in Shanghai is 23:30 UTC of the day before; at 1440x a wall second is 24 simulated minutes.
    client = await make_client(
        make_config(),
        clock=fast_clock("2026-11-11T07:30:00+08:00", wall),
    )
    assert (await pay(client, "full", amount=5_000_000)).status == 201
    assert (await pay(client, "more-1", amount=100)).status == 422

    wall.advance(2)  # 08:18 Shanghai = 00:18 UTC: a new UTC day, still the same business day
    after_utc_midnight = await pay(client, "more-2", amount=100)
    assert after_utc_midnight.status == 422
    problem = await after_utc_midnight.json()
    assert problem["resets_at"] == "2026-11-12T00:00:00+08:00"

    wall.advance(40)  # 24:18 Shanghai: the next business day
    next_day = await pay(client, "more-3", amount=100)
    assert next_day.status == 201
    assert (await next_day.json())["business_date"] == "2026-11-12"


async def test_suggested_plan_paid_part_by_part_is_accepted_in_full(make_config: Any, make_client: Any) -> None:
    wall = ManualWall()
    clock = fast_clock("2026-11-11T10:00:00+08:00", wall)
    client = await make_client(make_config(), clock=clock)
    assert (await pay(client, "earlier", channel="BOC", card="c9", amount=700_000)).status == 201

    declined = await pay(client, "whole", channel="BOC", card="c9", amount=4_500_000)
    assert declined.status == 422
    plan = (await declined.json())["suggested_plan"]
    assert sum(part["amount_fen"] for part in plan) == 4_500_000
    assert len({part["business_date"] for part in plan}) >= 3

    for index, part in enumerate(plan):
        while clock.now().date() < date.fromisoformat(part["business_date"]):
            wall.advance(30)  # 12 simulated hours
        response = await pay(client, f"part-{index}", channel="BOC", card="c9", amount=part["amount_fen"])
        assert response.status == 201, await response.text()
        assert (await response.json())["business_date"] == part["business_date"]


async def test_200_concurrent_repayments_of_a_hundredth_fill_the_card_exactly(
    make_config: Any, make_client: Any
) -> None:
    channel = {
        "code": "ICBC",
        "single_fen": 5_000_000,
        "card_daily_fen": 5_000_000,
        "concurrency": 1000,
        "latency_ms": {"median": 2, "p99": 20},
    }
    config = make_config(channels=[channel])
    client = await make_client(config)

    responses = await asyncio.gather(*(pay(client, f"c{i}", user=f"u{i % 7}", amount=50_000) for i in range(200)))

    statuses = [r.status for r in responses]
    codes = [(await r.json()).get("code") for r in responses if r.status != 201]
    assert statuses.count(201) == 100
    assert codes == ["DAILY_LIMIT_EXCEEDED"] * 100
    with sqlite3.connect(config.ledger.path) as conn:
        total = conn.execute("SELECT SUM(amount_fen) FROM repayments WHERE card_id = 'c1'").fetchone()[0]
    assert total == 5_000_000


async def test_business_date_is_the_shanghai_date(make_config: Any, make_client: Any) -> None:
    wall = ManualWall()
    client = await make_client(make_config(), clock=fast_clock("2026-11-11T00:30:00+08:00", wall, speed=1))
    created = await (await pay(client, "bd")).json()
    assert created["business_date"] == "2026-11-11"
    assert datetime(2026, 11, 11, 0, 30, tzinfo=SHANGHAI).date().isoformat() == created["business_date"]
