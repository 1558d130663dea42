"""Asynchronous settlement through a real cluster: the router passes 202 + Location through, fans the settlement
faults out like any other, and a primary killed while it holds pending payments leaves them to the standby."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from tests.mock_gateway.cluster.conftest import FAST_CHANNEL, StartCluster
from tests.mock_gateway.cluster.test_failover import admin
from tests.mock_gateway.cluster.traffic import repayment

ASYNC = [{**FAST_CHANNEL, "settlement": "async", "settle_ms": {"median": 100, "p99": 200}}]


async def final_state(session: aiohttp.ClientSession, url: str, location: str) -> dict[str, Any]:
    """Poll through the router until the payment is final; the 60 s bound only turns a hang into a failure."""
    deadline = time.monotonic() + 60
    while True:
        async with session.get(url + location) as response:
            if response.status == 200:
                state: dict[str, Any] = await response.json()
                if state["status"] != "processing":
                    return state
        assert time.monotonic() < deadline, f"{location} never settled"
        await asyncio.sleep(0.05)


async def test_a_killed_primarys_pending_payments_settle_on_the_standby(start_cluster: StartCluster) -> None:
    cluster = start_cluster(replicas=2, channels=ASYNC, settlement={"lease_ms": 1500})
    stall = {"kind": "settlement_stall", "duration_s": 600, "target": "r1"}
    status, applied = await admin(cluster, "POST", "/admin/faults", json=stall)
    assert (status, applied["applied"]) == (200, ["r1"])  # the router forwards the new kinds as it does the rest
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        locations = []
        for n in range(30):
            body = repayment(f"u-s{n}", f"c-s{n}", 1000)
            async with session.post(
                f"{cluster.url}/v1/repayments", json=body, headers={"Idempotency-Key": f"k{n}"}
            ) as r:
                assert (r.status, r.headers.get("X-Replica")) == (202, "r1"), await r.text()
                locations.append(r.headers["Location"])
        assert (await admin(cluster, "POST", "/admin/replicas/r1/kill"))[0] == 200
        finals = await asyncio.gather(*(final_state(session, cluster.url, loc) for loc in locations))
    assert {(state["status"], state["settled_by"]) for state in finals} == {("succeeded", "r2")}
