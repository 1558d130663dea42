"""Black-box tests against real `python -m mock_gateway` processes: shared ledger, rate cap, SIGKILL, CLI."""

from __future__ import annotations

import asyncio
import itertools
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mock_gateway.limits import default_burst
from tests.mock_gateway.conftest import REPO, Replica, body

FAST_CARD = {
    "code": "ICBC",
    "single_fen": 5_000_000,
    "card_daily_fen": 5_000_000,
    "concurrency": 1000,
    "latency_ms": {"median": 2, "p99": 20},
}


def ledger_config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {"ledger": {"path": str(tmp_path / "shared.sqlite")}, **extra}


async def post(session: aiohttp.ClientSession, url: str, key: str, payload: dict[str, Any]) -> tuple[int, Any]:
    async with session.post(f"{url}/v1/repayments", json=payload, headers={"Idempotency-Key": key}) as response:
        return response.status, await response.json(content_type=None)


async def test_two_replicas_sharing_a_ledger_fill_the_card_exactly(tmp_path: Path, start_replica: Any) -> None:
    config = ledger_config(tmp_path, channels=[FAST_CARD])
    replicas: list[Replica] = [start_replica(config, name="r1"), start_replica(config, name="r2")]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=400)) as session:
        results = await asyncio.gather(
            *(post(session, replicas[i % 2].url, f"k{i}", body(user=f"u{i % 7}", amount=50_000)) for i in range(200))
        )
    statuses = [status for status, _ in results]
    assert statuses.count(201) == 100, statuses
    assert sorted({doc["code"] for status, doc in results if status != 201}) == ["DAILY_LIMIT_EXCEEDED"]
    assert {doc["replica"] for status, doc in results if status == 201} <= {"r1", "r2"}
    with sqlite3.connect(tmp_path / "shared.sqlite") as conn:
        assert conn.execute("SELECT SUM(amount_fen), COUNT(*) FROM repayments").fetchone() == (5_000_000, 100)


async def test_rate_cap_admits_n_per_second_under_three_times_the_load(tmp_path: Path, start_replica: Any) -> None:
    cap = 100
    replica = start_replica(ledger_config(tmp_path, limits={"replica_tps": cap}))
    rejections: list[tuple[str | None, Any]] = []
    sent_at: list[float] = []

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        payload = body(user=f"u{i}", card=f"c{i}", amount=100)
        sent_at.append(time.time())
        async with session.post(
            f"{replica.url}/v1/repayments", json=payload, headers={"Idempotency-Key": f"rate-{i}"}
        ) as response:
            if response.status != 201:
                rejections.append((response.headers.get("Retry-After"), await response.json()))

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
        started = time.monotonic()
        tasks = []
        for i in range(int(3 * cap * 5.4)):
            await asyncio.sleep(max(0.0, started + i / (3 * cap) - time.monotonic()))
            tasks.append(asyncio.create_task(one(session, i)))
        await asyncio.gather(*tasks)

    assert rejections
    assert all(retry_after is not None and int(retry_after) >= 1 for retry_after, _ in rejections)
    assert {doc["code"] for _, doc in rejections} == {"RATE_LIMITED"}
    # Admission instants as the ledger recorded them (bank latency 0: the commit follows admission by ~1 ms).
    with sqlite3.connect(tmp_path / "shared.sqlite") as conn:
        rows = conn.execute("SELECT created_at FROM repayments").fetchall()
    admitted = sorted(datetime.fromisoformat(row[0]).timestamp() for row in rows)
    first = admitted[0]
    windows = []
    for s in range(5):
        lo, hi = first + s, first + s + 1
        offered = sum(1 for t in sent_at if lo <= t < hi)
        inside = [t for t in admitted if lo - 1 / cap <= t < hi]
        count = sum(1 for t in inside if t >= lo)
        longest_gap = max((b - a for a, b in itertools.pairwise(inside)), default=1.0)
        windows.append((offered, count, round(longest_gap, 3)))
    # On a shared 2-core machine either process can be descheduled for a while: a second in which this
    # generator did not offer about 3N, or in which the replica admitted nothing for 60 ms (6 slots) while
    # offered 3N, measures the scheduler, not the cap (surge marks such runs invalid). Judge the others.
    judged = [count for offered, count, gap in windows if offered >= 2.7 * cap and gap <= 0.06]
    if len(judged) < 3:
        pytest.skip(f"machine too busy, (offered, admitted, longest gap s) per second: {windows}")
    assert all(0.95 * cap <= count <= 1.05 * cap for count in judged), windows
    assert sum(count for _, count, _ in windows) <= 5 * cap + default_burst(cap)


async def test_every_acknowledged_repayment_survives_sigkill(tmp_path: Path, start_replica: Any) -> None:
    config = ledger_config(tmp_path, channels=[FAST_CARD | {"card_daily_fen": 10**9}])
    replica = start_replica(config)
    acknowledged: list[str] = []
    enough = asyncio.Event()
    give_up_at = time.monotonic() + 60

    async def client(session: aiohttp.ClientSession, worker: int) -> None:
        for i in range(10_000):
            if replica.process.poll() is not None or time.monotonic() > give_up_at:
                return
            try:
                status, doc = await post(session, replica.url, f"w{worker}-{i}", body(user=f"u{worker}", amount=1))
            except (TimeoutError, aiohttp.ClientError):
                return
            if status == 201:
                acknowledged.append(doc["repayment_id"])
                if len(acknowledged) >= 100:
                    enough.set()

    async def killer() -> None:
        # Killed mid-stream once 100 were acknowledged (a count, not a time: a starved machine acknowledges fewer
        # per second), while the 16 clients still have requests in flight.
        try:
            await asyncio.wait_for(enough.wait(), timeout=60)
        finally:
            replica.process.send_signal(signal.SIGKILL)

    timeout = aiohttp.ClientTimeout(total=10)  # the kill resets connections at once; this only bounds a hang
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(killer(), *(client(session, w) for w in range(16)))
    replica.process.wait(timeout=10)
    assert len(acknowledged) > 50

    restarted = start_replica(config, name="r1b")
    async with aiohttp.ClientSession() as session:
        for repayment_id in acknowledged:
            async with session.get(f"{restarted.url}/v1/repayments/{repayment_id}") as response:
                assert response.status == 200, repayment_id


def run_cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mock_gateway", *args], capture_output=True, text=True, cwd=REPO, timeout=timeout
    )


def test_bad_config_exits_2_with_one_line_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits]\nuser_tps = -5\n")
    result = run_cli("--config", str(bad), "--port", "0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["mock_gateway: 'limits.user_tps' must be > 0 (got -5)"]
    assert "Traceback" not in result.stderr


def test_public_bind_is_refused_without_the_flag(tmp_path: Path) -> None:
    result = run_cli("--port", "0", "--host", "0.0.0.0")  # noqa: S104  # the refusal is what is tested
    assert result.returncode == 2
    assert "--allow-public-bind" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_usage_exits_2() -> None:
    assert run_cli("--config").returncode == 2
    assert run_cli("--port", "70000").returncode == 2
    for share in ("0", "1.5", "-0.5"):
        result = run_cli("--port", "0", "--bank-share", share)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [f"mock_gateway: --bank-share must be > 0 and <= 1 (got {share})"]


async def test_sigterm_drains_in_flight_requests_and_exits_0(tmp_path: Path, start_replica: Any) -> None:
    slow = FAST_CARD | {"latency_ms": {"median": 600, "p99": 600}}
    config = ledger_config(tmp_path, channels=[slow], admin={"token": ""})
    replica = start_replica(config)
    assert any("admin token:" in line for line in replica.lines)
    async with aiohttp.ClientSession() as session:
        in_flight = asyncio.ensure_future(post(session, replica.url, "slow-1", body()))
        deadline = time.monotonic() + 30  # until the request waits on the bank (a fixed sleep was a guess)
        while True:
            async with session.get(f"{replica.url}/metrics") as response:
                if 'surge_gateway_bank_in_flight{channel="ICBC"} 1.0' in await response.text():
                    break
            assert time.monotonic() < deadline, "the request never reached the bank"
            await asyncio.sleep(0.01)
        replica.process.send_signal(signal.SIGTERM)
        status, doc = await in_flight
    assert status == 201
    assert replica.process.wait(timeout=15) == 0
    with sqlite3.connect(tmp_path / "shared.sqlite") as conn:
        assert conn.execute("SELECT repayment_id FROM repayments").fetchall() == [(doc["repayment_id"],)]


def test_an_unusable_ledger_path_exits_3_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text('{"ledger": {"path": "/proc/surge-no-such-dir/ledger.sqlite"}, "admin": {"token": "t"}}')
    result = run_cli("--config", str(config), "--port", "0")
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("mock_gateway: cannot create the folder of ledger /proc/surge-no-such-dir/ledger.sqlite")
