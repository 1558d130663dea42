"""Failover with real processes: kill and pause replicas under load, then check clients against the ledger."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from typing import Any

import aiohttp
import psutil

from mock_gateway.cluster.handle import ClusterProcess
from tests.mock_gateway.cluster.conftest import CARD_DAILY_FEN, StartCluster
from tests.mock_gateway.cluster.events_file import wait_event
from tests.mock_gateway.cluster.traffic import FINAL, Payment, ledger_rows, pay, repayment, steady_load

DEFAULT_DETECTION_BOUND_S = 2 * 0.2 + 0.25  # two check intervals plus the check timeout (the detection target)
SLACK_S = 0.5  # two shared cores: scheduling noise


async def admin(cluster: ClusterProcess, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {cluster.admin_token}"}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.request(method, cluster.url + path, headers=headers, **kwargs) as response,
    ):
        return response.status, await response.json(content_type=None)


async def replica_states(cluster: ClusterProcess) -> dict[str, tuple[str, str]]:
    _, body = await admin(cluster, "GET", "/admin/replicas")
    return {r["name"]: (r["state"], r["role"]) for r in body["replicas"]}


async def test_kill_primary_under_load_loses_nothing(start_cluster: StartCluster) -> None:
    cluster = start_cluster(3)
    payments: list[Payment] = []
    stop = asyncio.Event()

    async def answered(by: str, count: int, after: float = 0.0) -> None:
        """Until `count` payments sent after `after` got a final answer from `by` (counts, not times: a starved
        machine pays fewer per second); the 60 s bound only turns a stuck load into a failure."""
        deadline = time.monotonic() + 60
        while sum(p.replica == by and p.status in FINAL and p.sent_at > after for p in payments) < count:
            assert time.monotonic() < deadline, f"fewer than {count} payments answered by {by}"
            await asyncio.sleep(0.01)

    async def kill_under_load() -> float:
        try:
            await answered("r1", 30)  # past the cards' daily caps (24 payments), so 422s are in the mix
            status, body = await admin(cluster, "POST", "/admin/replicas/primary/kill")
            assert (status, body["name"]) == (200, "r1")
            killed_at = time.monotonic()
            await answered("r2", 30, after=killed_at)
            return killed_at
        finally:
            stop.set()

    _, killed_at = await asyncio.gather(
        steady_load(cluster.url, workers=6, duration_s=120, stop=stop, payments=payments), kill_under_load()
    )

    # Clients: every payment got a final answer, and none saw an error the router could have retried.
    assert len(payments) > 50
    unresolved = [p for p in payments if p.status not in (201, 422)]
    assert not unresolved, unresolved[:5]
    seen_errors = [(p.key, p.errors) for p in payments if p.errors]
    assert not seen_errors, seen_errors[:5]
    # Causal, not timed: a payment first sent after the kill was acknowledged can only be answered by r2.
    assert {p.replica for p in payments if p.sent_at > killed_at} == {"r2"}

    # Events: the kill was seen at once (the supervisor reports the exit), traffic moved r1 -> r2.
    events = cluster.events_path
    killed = wait_event(events, "killed", "r1")
    down = wait_event(events, "replica_down", "r1")
    failover = wait_event(events, "failover")
    assert failover["detail"] == "r1->r2"
    assert down["mono"] - killed["mono"] < DEFAULT_DETECTION_BOUND_S

    # Ledger: acknowledged set == ledger set, nothing twice, the per-card daily cap held across replicas.
    cluster.stop()
    rows = ledger_rows(cluster.ledger_path)
    acked = {p.key: p.repayment_id for p in payments if p.status == 201}
    assert {r["idempotency_key"]: r["repayment_id"] for r in rows} == acked
    assert len(rows) == len({r["repayment_id"] for r in rows})
    per_card: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        per_card[(row["card_id"], row["business_date"])] += row["amount_fen"]
    assert max(per_card.values()) <= CARD_DAILY_FEN
    assert sum(p.status == 422 for p in payments) > 0  # the cap was actually reached, so it was tested
    assert Counter(r["replica"] for r in rows).keys() <= {"r1", "r2"}


async def test_pause_resume_and_restart(start_cluster: StartCluster) -> None:
    cluster = start_cluster(3)
    events = cluster.events_path

    # A paused standby is marked down within two intervals plus the check timeout, and up after `rise`.
    status, _ = await admin(cluster, "POST", "/admin/replicas/r2/pause")
    assert status == 200
    paused = wait_event(events, "paused", "r2")
    down = wait_event(events, "replica_down", "r2")
    assert down["mono"] - paused["mono"] < DEFAULT_DETECTION_BOUND_S + SLACK_S
    assert (await replica_states(cluster))["r2"] == ("paused", "standby")
    assert wait_event(events, "check_failed", "r2")["mono"] < down["mono"]

    await admin(cluster, "POST", "/admin/replicas/r2/resume")
    resumed = wait_event(events, "resumed", "r2")
    up = wait_event(events, "replica_up", "r2", after_mono=resumed["mono"])
    # rise = 2 good checks; a probe sent just before the resume may be the first of them
    assert 0 < up["mono"] - resumed["mono"] < DEFAULT_DETECTION_BOUND_S + SLACK_S
    assert (await replica_states(cluster))["r2"] == ("up", "standby")

    # Pausing the primary under traffic: requests still succeed (cut and retried on r2 once it is down).
    await admin(cluster, "POST", "/admin/replicas/primary/pause")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        results = await asyncio.gather(
            *(pay(session, cluster.url, Payment(f"pause-{i}", repayment(f"pu{i}", f"pc{i}", 1000))) for i in range(8))
        )
    assert [p.status for p in results] == [201] * 8
    assert {p.replica for p in results} == {"r2"}
    away = wait_event(events, "failover")
    assert away["detail"] == "r1->r2"
    await admin(cluster, "POST", "/admin/replicas/r1/resume")
    # r1 takes traffic back: resumed, or (on a very slow host) fenced and restarted first — either way.
    failback = wait_event(events, "failover", after_mono=away["mono"], timeout_s=10)
    assert failback["detail"] == "r2->r1"

    # Restart: a new process on the same port, which rejoins after `rise` checks.
    before = (await admin(cluster, "GET", "/admin/replicas"))[1]["replicas"][2]
    status, after = await admin(cluster, "POST", "/admin/replicas/r3/restart")
    assert status == 200 and after["pid"] != before["pid"] and after["port"] == before["port"]
    restarted = wait_event(events, "restarted", "r3")
    wait_event(events, "replica_up", "r3", after_mono=restarted["mono"], timeout_s=10)
    assert (await replica_states(cluster))["r3"] == ("up", "standby")
    assert cluster.refresh()["replicas"][2]["pid"] == after["pid"]

    # A replica left stopped is fenced (it could be holding the ledger's write lock) and comes back.
    await admin(cluster, "POST", "/admin/replicas/r3/pause")
    paused = wait_event(events, "paused", "r3", after_mono=restarted["mono"])
    fenced = wait_event(events, "killed", "r3", after_mono=paused["mono"])
    assert fenced["detail"].startswith("fenced: down and stopped")
    # marked down (<= the detection bound), then stopped for 1 s as seen by a watchdog ticking every 200 ms
    assert 1.0 <= fenced["mono"] - paused["mono"] < 1.0 + DEFAULT_DETECTION_BOUND_S + 0.2 + 2 * SLACK_S
    wait_event(events, "replica_up", "r3", after_mono=fenced["mono"], timeout_s=10)
    assert cluster.refresh()["replicas"][2]["pid"] not in (None, after["pid"])


async def test_no_healthy_replica_is_a_503_with_retry_after(start_cluster: StartCluster) -> None:
    cluster = start_cluster(1)
    await admin(cluster, "POST", "/admin/replicas/r1/kill")
    wait_event(cluster.events_path, "replica_down", "r1")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.post(
            cluster.url + "/v1/repayments", json=repayment("u", "c", 100), headers={"Idempotency-Key": "nh-1"}
        ) as response:
            body = await response.json(content_type=None)
            assert response.status == 503
            assert body["code"] == "NO_HEALTHY_REPLICA" and body["retryable"] is True
            assert response.headers["Retry-After"] == "1"
            assert response.headers["X-Replica"] == "router"
            assert response.headers["Content-Type"].startswith("application/problem+json")
        async with session.get(cluster.url + "/readyz") as response:
            assert response.status == 503


async def test_active_active_spreads_by_least_in_flight(start_cluster: StartCluster) -> None:
    cluster = start_cluster(2, router={"mode": "active-active"})
    payments = await steady_load(cluster.url, workers=4, duration_s=1.0, cards=50, amount_fen=100)
    assert {p.replica for p in payments} == {"r1", "r2"}
    states = await replica_states(cluster)
    assert {role for _, role in states.values()} == {"active"}


async def test_an_admin_kill_answers_once_the_process_is_gone(start_cluster: StartCluster) -> None:
    """The kill's answer means the replica is dead and reaped: its pid is gone and the admin API lists it down,
    so a client retrying at another replica never meets the dead one's idempotency claim as live."""
    cluster = start_cluster(2)
    headers = {"Authorization": f"Bearer {cluster.admin_token}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        pid = next(r["pid"] for r in cluster.refresh()["replicas"] if r["name"] == "r1")
        async with session.post(cluster.url + "/admin/replicas/r1/kill", headers=headers) as response:
            assert response.status == 200
            assert (await response.json())["state"] == "down", "answered while the process was still alive"
        assert not psutil.pid_exists(pid), "answered before the process was reaped (a zombie still has its pid)"
        async with session.get(cluster.url + "/admin/replicas", headers=headers) as response:
            states = {r["name"]: r["state"] for r in (await response.json())["replicas"]}
    assert states["r1"] == "down"
