"""Active-active: one Idempotency-Key sent straight to two replicas at once.

The README promises 409 IDEMPOTENCY_IN_FLIGHT for the same key while the first request is being processed.
Behind one router a key meets one replica at a time, but two replicas taking traffic side by side would both
call the bank; the key is claimed in the shared ledger before the bank call, and the claim of a replica that
died is void at once, so failover never waits on it. The money invariant holds either way: one ledger row.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.mock_gateway.cluster.conftest import FAST_CHANNEL, StartCluster
from tests.mock_gateway.cluster.events_file import wait_event
from tests.mock_gateway.cluster.test_failover import admin
from tests.mock_gateway.cluster.traffic import ledger_rows, repayment

SLOW_BANK = [{**FAST_CHANNEL, "latency_ms": {"median": 600, "p99": 800}}]


def claims(ledger: Path) -> list[tuple[str, str]]:
    with contextlib.closing(sqlite3.connect(ledger.resolve().as_uri() + "?mode=ro", uri=True)) as db:
        return [(key, replica) for key, replica in db.execute("SELECT key, replica FROM claims")]


async def until_claimed(ledger: Path, key: str, replica: str) -> None:
    """Until `replica` holds the claim on `key` (it then waits on the slow bank for 600 ms or more); the 30 s
    deadline only turns a hang into a failure."""
    deadline = time.monotonic() + 30
    while claims(ledger) != [(key, replica)]:
        assert time.monotonic() < deadline, f"{replica} never claimed {key}: {claims(ledger)}"
        await asyncio.sleep(0.01)


async def post(session: aiohttp.ClientSession, url: str, key: str, body: dict[str, Any]) -> tuple[int, str, bool]:
    async with session.post(f"{url}/v1/repayments", json=body, headers={"Idempotency-Key": key}) as response:
        data = await response.json(content_type=None)
        replayed = response.headers.get("Idempotent-Replayed") == "true"
        return response.status, str(data.get("code", "")), replayed


async def test_the_same_key_at_two_replicas_at_once_is_409_for_the_second(start_cluster: StartCluster) -> None:
    cluster = start_cluster(replicas=2, router={"mode": "active-active"}, channels=SLOW_BANK)
    ports = {r["name"]: r["port"] for r in cluster.refresh()["replicas"]}
    body = repayment("u-aa", "c-aa", 1000)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        # r2 gets the key once r1 holds its claim, not "at once" by luck: sent together, a starved r2 could
        # answer after r1 had finished (a replay), and the in-flight case would go untested.
        pending = asyncio.ensure_future(post(session, f"http://127.0.0.1:{ports['r1']}", "k-aa", body))
        await until_claimed(cluster.ledger_path, "k-aa", "r1")
        second = await post(session, f"http://127.0.0.1:{ports['r2']}", "k-aa", body)
        first = await pending
        assert (first, second) == ((201, "", False), (409, "IDEMPOTENCY_IN_FLIGHT", False))
        again = await post(session, f"http://127.0.0.1:{ports['r2']}", "k-aa", body)
        assert again == (201, "", True)
    assert [row["idempotency_key"] for row in ledger_rows(cluster.ledger_path)] == ["k-aa"]


async def test_a_killed_replicas_claim_does_not_block_the_retry(start_cluster: StartCluster) -> None:
    cluster = start_cluster(replicas=2, router={"mode": "active-active"}, channels=SLOW_BANK)
    ports = {r["name"]: r["port"] for r in cluster.refresh()["replicas"]}
    body = repayment("u-kill", "c-kill", 1000)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        pending = asyncio.ensure_future(post(session, f"http://127.0.0.1:{ports['r1']}", "k-kill", body))
        await until_claimed(cluster.ledger_path, "k-kill", "r1")
        assert (await admin(cluster, "POST", "/admin/replicas/r1/kill"))[0] == 200
        await asyncio.gather(pending, return_exceptions=True)
        # The admin kill answers once SIGKILL is sent; until the process is gone (reaped) its claim reads as live,
        # and on a starved host the retry could land in that window. Dead means its claim is void at once: no
        # 60 s lease to wait out.
        await asyncio.to_thread(wait_event, cluster.events_path, "process_died", "r1")
        retried = await post(session, f"http://127.0.0.1:{ports['r2']}", "k-kill", body)
    assert retried == (201, "", False)
    assert [row["idempotency_key"] for row in ledger_rows(cluster.ledger_path)] == ["k-kill"]
