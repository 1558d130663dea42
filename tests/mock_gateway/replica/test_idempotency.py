"""Idempotency-Key semantics as docs/gateway.md and the README give them, in-process."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from mock_gateway.replica.state import STATE_KEY
from tests.mock_gateway.conftest import body


def ledger_counts(path: Path) -> tuple[int, int]:
    with sqlite3.connect(path) as conn:
        repayments = conn.execute("SELECT COUNT(*) FROM repayments").fetchone()[0]
        records = conn.execute("SELECT COUNT(*) FROM idempotency").fetchone()[0]
    return repayments, records


async def test_replay_returns_identical_body_and_records_nothing(make_config: Any, make_client: Any) -> None:
    config = make_config()
    client = await make_client(config)
    first = await client.post("/v1/repayments", json=body(), headers={"Idempotency-Key": "k-1"})
    assert first.status == 201
    first_text = await first.text()
    assert "Idempotent-Replayed" not in first.headers
    assert first.headers["X-Replica"] == "r1"
    before = ledger_counts(config.ledger.path)

    again = await client.post("/v1/repayments", json=body(), headers={"Idempotency-Key": "k-1"})

    assert again.status == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await again.text() == first_text
    assert ledger_counts(config.ledger.path) == before == (1, 1)


async def test_reuse_with_another_body_is_422_and_records_nothing(make_config: Any, make_client: Any) -> None:
    config = make_config()
    client = await make_client(config)
    await client.post("/v1/repayments", json=body(amount=100), headers={"Idempotency-Key": "k-2"})

    reused = await client.post("/v1/repayments", json=body(amount=101), headers={"Idempotency-Key": "k-2"})

    assert reused.status == 422
    assert reused.content_type == "application/problem+json"
    problem = await reused.json()
    assert problem["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert problem["retryable"] is False
    assert ledger_counts(config.ledger.path) == (1, 1)


async def test_concurrent_duplicate_is_409_with_retry_after(
    make_config: Any, make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bank holds the first request until the duplicate has been answered: a slow bank and a fixed sleep
    # raced on a loaded machine (the first could finish, or not yet be in flight, when the duplicate arrived).
    config = make_config()
    client = await make_client(config)
    at_bank, release = asyncio.Event(), asyncio.Event()

    async def held_call(code: str) -> None:
        at_bank.set()
        await release.wait()

    monkeypatch.setattr(client.app[STATE_KEY].bank, "call", held_call)
    first = asyncio.ensure_future(client.post("/v1/repayments", json=body(), headers={"Idempotency-Key": "k-3"}))
    await asyncio.wait_for(at_bank.wait(), timeout=30)

    duplicate = await asyncio.wait_for(  # bounded: a duplicate let through would wait at the held bank too
        client.post("/v1/repayments", json=body(), headers={"Idempotency-Key": "k-3"}), timeout=30
    )
    release.set()

    assert duplicate.status == 409
    assert (await duplicate.json())["code"] == "IDEMPOTENCY_IN_FLIGHT"
    assert int(duplicate.headers["Retry-After"]) >= 1
    assert (await first).status == 201
    assert ledger_counts(config.ledger.path) == (1, 1)


async def test_stored_decline_replays_as_decline(make_config: Any, make_client: Any) -> None:
    config = make_config()
    client = await make_client(config)
    declined = await client.post("/v1/repayments", json=body(amount=6_000_000), headers={"Idempotency-Key": "k-4"})
    assert declined.status == 422
    declined_text = await declined.text()
    assert (await declined.json())["code"] == "SINGLE_LIMIT_EXCEEDED"

    again = await client.post("/v1/repayments", json=body(amount=6_000_000), headers={"Idempotency-Key": "k-4"})

    assert again.status == 422
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await again.text() == declined_text
    assert ledger_counts(config.ledger.path) == (0, 1)


async def test_rate_limited_request_is_not_stored_and_retry_runs_afresh(make_config: Any, make_client: Any) -> None:
    config = make_config(limits={"user_tps": 1})
    client = await make_client(config)
    assert (await client.post("/v1/repayments", json=body(), headers={"Idempotency-Key": "a"})).status == 201

    limited = await client.post("/v1/repayments", json=body(), headers={"Idempotency-Key": "b"})
    assert limited.status == 429
    assert ledger_counts(config.ledger.path) == (1, 1)
    # Waiting out the user's 1 s rate window IS the behaviour here (the per-second caps run on the monotonic
    # wall clock, not the simulated one); a loaded machine only makes the wait longer, never too short.
    await asyncio.sleep(1.05)

    retried = await client.post("/v1/repayments", json=body(), headers={"Idempotency-Key": "b"})
    assert retried.status == 201
    assert "Idempotent-Replayed" not in retried.headers
