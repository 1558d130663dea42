"""The router's own answers on one shared cluster: admin auth, caps, injected faults, metrics."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from mock_gateway.cluster.handle import ClusterProcess
from tests.mock_gateway.cluster.conftest import StartCluster
from tests.mock_gateway.cluster.events_file import read_events, wait_event
from tests.mock_gateway.cluster.traffic import Payment, ledger_rows, pay, repayment


@pytest.fixture
async def session() -> Any:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


def bearer(cluster: ClusterProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {cluster.admin_token}"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}])
async def test_admin_needs_the_token(
    shared_cluster: ClusterProcess, session: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    for method, path in [("GET", "/admin/replicas"), ("POST", "/admin/replicas/r3/kill"), ("DELETE", "/admin/faults")]:
        async with session.request(method, shared_cluster.url + path, headers=headers) as response:
            body = await response.json(content_type=None)
            assert (response.status, body["code"]) == (401, "UNAUTHORIZED")
    async with session.get(shared_cluster.url + "/admin/replicas", headers=bearer(shared_cluster)) as response:
        body = await response.json()
    assert response.status == 200
    assert [(r["name"], r["state"], r["role"]) for r in body["replicas"]] == [
        ("r1", "up", "primary"),
        ("r2", "up", "standby"),
        ("r3", "up", "standby"),
    ]
    assert all(isinstance(r["pid"], int) and isinstance(r["port"], int) for r in body["replicas"])


async def test_per_user_cap_at_the_router(shared_cluster: ClusterProcess, session: aiohttp.ClientSession) -> None:
    statuses = []
    for i in range(8):
        async with session.post(
            shared_cluster.url + "/v1/repayments",
            json=repayment("capped-user", "capped-card", 100),
            headers={"Idempotency-Key": f"cap-{i}"},
        ) as response:
            body = await response.json(content_type=None)
            statuses.append(response.status)
            if response.status == 429:
                assert body["code"] == "RATE_LIMITED" and body["scope"] == "user"
                assert body["retry_after_ms"] > 0
                assert response.headers["Retry-After"] == "1"
                assert response.headers["RateLimit-Policy"].startswith('"user";q=3')
                assert "RateLimit" in response.headers
                assert response.headers["X-Replica"] == "router"
    assert statuses.count(201) == 3  # user_tps = 3: a second's allowance at once, then refusals
    assert statuses.count(429) == 5


async def test_lose_response_on_the_primary_is_hidden_by_the_retry(
    shared_cluster: ClusterProcess, session: aiohttp.ClientSession
) -> None:
    fault = {"kind": "lose_response", "ratio": 1.0, "duration_s": 30, "target": "primary"}
    async with session.post(shared_cluster.url + "/admin/faults", json=fault, headers=bearer(shared_cluster)) as r:
        assert r.status == 200 and (await r.json())["applied"] == ["r1"]
    try:
        async with session.post(
            shared_cluster.url + "/v1/repayments",
            json=repayment("lose-1", "lose-card-1", 500),
            headers={"Idempotency-Key": "lose-1"},
        ) as response:
            body = await response.json()
            assert response.status == 201
            assert response.headers["X-Replica"] == "r2"  # r1 committed, dropped the answer; r2 replayed it
            assert response.headers.get("Idempotent-Replayed") == "true"
    finally:
        async with session.delete(shared_cluster.url + "/admin/faults", headers=bearer(shared_cluster)) as r:
            assert r.status == 200
    rows = [row for row in ledger_rows(shared_cluster.ledger_path) if row["idempotency_key"] == "lose-1"]
    assert [(row["repayment_id"], row["replica"]) for row in rows] == [(body["repayment_id"], "r1")]
    kinds = [(e["kind"], e["replica"]) for e in read_events(shared_cluster.events_path)]
    assert ("fault_started", "r1") in kinds and ("fault_ended", "r1") in kinds


async def test_lost_response_then_client_retry_with_same_key(
    shared_cluster: ClusterProcess, session: aiohttp.ClientSession
) -> None:
    """The client itself meets the lost response (talking to r3 directly), then retries through the router."""
    fault = {"kind": "lose_response", "ratio": 1.0, "duration_s": 30, "target": "r3"}
    async with session.post(shared_cluster.url + "/admin/faults", json=fault, headers=bearer(shared_cluster)) as r:
        assert (await r.json())["applied"] == ["r3"]
    r3 = next(r for r in shared_cluster.state["replicas"] if r["name"] == "r3")
    payment = Payment("lose-2", repayment("lose-2", "lose-card-2", 700))
    try:
        first = await pay(session, f"http://127.0.0.1:{r3['port']}", payment, max_attempts=1)
        assert first.status == 0 and first.errors == ["ServerDisconnectedError"]
    finally:
        async with session.delete(shared_cluster.url + "/admin/faults", headers=bearer(shared_cluster)) as r:
            assert r.status == 200
    again = await pay(session, shared_cluster.url, payment, max_attempts=3)
    assert (again.status, again.replica) == (201, "r1")
    rows = [row for row in ledger_rows(shared_cluster.ledger_path) if row["idempotency_key"] == "lose-2"]
    assert [(row["repayment_id"], row["replica"]) for row in rows] == [(again.repayment_id, "r3")]


async def test_a_bad_fault_is_refused_by_the_router(
    shared_cluster: ClusterProcess, session: aiohttp.ClientSession
) -> None:
    for fault, field in [({"kind": "latency", "duration_s": 5}, "body"), ({"kind": "nope", "duration_s": 1}, "kind")]:
        async with session.post(
            shared_cluster.url + "/admin/faults", json=fault, headers=bearer(shared_cluster)
        ) as response:
            body = await response.json(content_type=None)
            assert response.status == 400 and body["code"] == "VALIDATION_ERROR"
            assert field in {e["field"] for e in body["errors"]}
    async with session.post(
        shared_cluster.url + "/admin/faults",
        json={"kind": "errors", "duration_s": 1, "target": "r9"},
        headers=bearer(shared_cluster),
    ) as response:
        assert response.status == 404


async def test_injected_fault_expires_with_an_event(
    shared_cluster: ClusterProcess, session: aiohttp.ClientSession
) -> None:
    fault = {"kind": "latency", "latency_ms": 5, "ratio": 1.0, "duration_s": 0.3, "target": "r3"}
    before = time.monotonic()
    async with session.post(shared_cluster.url + "/admin/faults", json=fault, headers=bearer(shared_cluster)) as r:
        assert r.status == 200
    started = wait_event(shared_cluster.events_path, "fault_started", "r3", after_mono=before)
    assert started["detail"] == "duration_s=0.3 kind=latency latency_ms=5 ratio=1.0"
    ended = wait_event(shared_cluster.events_path, "fault_ended", "r3", after_mono=started["mono"])
    assert ended["detail"].startswith("expired") and 0.25 < ended["mono"] - started["mono"] < 1.5


async def test_router_answers_carry_x_replica_and_metrics_count_events(
    shared_cluster: ClusterProcess, session: aiohttp.ClientSession
) -> None:
    async with session.get(shared_cluster.url + "/nowhere") as response:
        assert response.status == 404 and response.headers["X-Replica"] == "router"
        assert (await response.json(content_type=None))["code"] == "NOT_FOUND"
    async with session.get(shared_cluster.url + "/v1/repayments/rp_missing") as response:
        assert response.status == 404 and response.headers["X-Replica"] == "r1"
    async with session.get(shared_cluster.url + "/v1/repayments/%2F..%2Fadmin%20x?y=%ZZ") as response:
        assert response.status == 404 and response.headers["X-Replica"] == "r1"  # an id that names no payment
    async with session.put(shared_cluster.url + "/admin/replicas", headers=bearer(shared_cluster)) as response:
        problem = await response.json(content_type=None)
        assert (response.status, problem["code"]) == (405, "METHOD_NOT_ALLOWED")
        assert response.headers["Allow"] == "GET, HEAD" and response.headers["X-Replica"] == "router"
    async with session.post(
        shared_cluster.url + "/v1/repayments",
        data=b"x" * 20_000,
        headers={"Idempotency-Key": "big", "Content-Type": "application/json"},
    ) as response:
        assert response.status == 413 and (await response.json(content_type=None))["code"] == "PAYLOAD_TOO_LARGE"
    async with session.get(shared_cluster.url + "/metrics") as response:
        text = await response.text()
    assert 'surge_router_events_total{kind="replica_up",replica="r1"} 1.0' in text
    assert 'surge_router_requests_total{replica="r1",status="404"}' in text
    assert 'surge_router_rejected_total{code="PAYLOAD_TOO_LARGE"} 1.0' in text
    assert 'surge_router_in_flight{replica="r1"} 0.0' in text
    async with session.get(shared_cluster.url + "/healthz") as response:
        assert response.status == 200


async def test_bodies_are_forwarded_whole_and_chunked_oversize_is_refused(
    shared_cluster: ClusterProcess, session: aiohttp.ClientSession
) -> None:
    padded = (
        b'{"user_id": "body-user", "card_id": "body-card", "channel": "ICBC", "amount_fen": 300'
        + (b" " * 12_000)
        + b"}"
    )

    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        for i in range(0, len(data), 1000):
            yield data[i : i + 1000]

    headers = {"Idempotency-Key": "body-1", "Content-Type": "application/json"}
    async with session.post(shared_cluster.url + "/v1/repayments", data=chunks(padded), headers=headers) as r:
        assert r.status == 201, await r.text()
        assert (await r.json())["amount_fen"] == 300
    headers = {"Idempotency-Key": "body-2", "Content-Type": "application/json"}
    async with session.post(shared_cluster.url + "/v1/repayments", data=chunks(padded * 2), headers=headers) as r:
        assert r.status == 413 and (await r.json(content_type=None))["code"] == "PAYLOAD_TOO_LARGE"


async def test_unknown_outcome_is_504_not_a_503_that_would_claim_nothing_was_stored(
    start_cluster: StartCluster, session: aiohttp.ClientSession
) -> None:
    """The only replica commits and drops the answer: the router cannot learn the outcome, so it must not
    answer 503 (nothing is stored for it). A retry with the same key, fault healed, returns the stored 201."""
    cluster = start_cluster(replicas=1)
    fault = {"kind": "lose_response", "ratio": 1.0, "duration_s": 30}
    async with session.post(cluster.url + "/admin/faults", json=fault, headers=bearer(cluster)) as r:
        assert (await r.json())["applied"] == ["r1"]
    request = {"json": repayment("lose-3", "lose-card-3", 900), "headers": {"Idempotency-Key": "lose-3"}}
    try:
        async with session.post(cluster.url + "/v1/repayments", **request) as response:
            problem = await response.json(content_type=None)
            assert response.status == 504
            assert problem["code"] == "OUTCOME_UNKNOWN" and problem["retryable"] is True
            assert "Retry-After" in response.headers
    finally:
        async with session.delete(cluster.url + "/admin/faults", headers=bearer(cluster)) as r:
            assert r.status == 200
    async with session.post(cluster.url + "/v1/repayments", **request) as response:
        body = await response.json()
        assert response.status == 201 and response.headers.get("Idempotent-Replayed") == "true"
    rows = [row for row in ledger_rows(cluster.ledger_path) if row["idempotency_key"] == "lose-3"]
    assert [row["repayment_id"] for row in rows] == [body["repayment_id"]]
