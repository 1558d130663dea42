"""Asynchronous settlement on one replica process, black-box over HTTP: accepted at once (202), settled by the
bank later, learned by polling the status endpoint or from a signed callback; the day's caps reserved at
acceptance and released by a refusal; settlement paced by the bank quota; the settlement faults."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mock_gateway.config_sources import load_config
from mock_gateway.errors import ConfigError
from tests.mock_gateway.conftest import ADMIN, QUIET, REPO, Replica, body, merge
from tests.mock_gateway.replica.callbacks import ASYNC_CHANNEL, SECRET, metric, post, receiver, status_of, until_final

TIMEOUT = aiohttp.ClientTimeout(total=30)


def async_config(tmp_path: Path, channel: dict[str, Any] | None = None, **sections: Any) -> dict[str, Any]:
    return {
        "channels": [{**ASYNC_CHANNEL, **(channel or {})}, QUIET["channels"][1]],
        "ledger": {"path": str(tmp_path / "ledger.sqlite")},
        "settlement": {"notify_secret": SECRET, **sections.pop("settlement", {})},
        **sections,
    }


async def test_accepted_at_once_settled_after_two_seconds_and_called_back_signed(
    start_replica: Any, tmp_path: Path
) -> None:
    replica: Replica = start_replica(async_config(tmp_path, {"settle_ms": {"median": 2000, "p99": 2000}}))
    async with receiver() as got, aiohttp.ClientSession(timeout=TIMEOUT) as session:
        sent = time.monotonic()
        status, accepted, headers = await post(session, replica.url, "k-2s", {**body(), "notify_url": got.url})
        answered = time.monotonic()
        assert status == 202, accepted
        assert answered - sent < 0.5  # acceptance does not wait for the bank
        assert accepted["status"] == "processing" and accepted["poll_after_ms"] == 2000
        assert headers["Location"] == f"/v1/repayments/{accepted['repayment_id']}"
        assert headers["Retry-After"] == "2"
        polled = await status_of(session, replica.url, accepted["repayment_id"])
        assert polled["status"] == "processing" and polled["settled_at"] is None
        again = await post(session, replica.url, "k-2s", body())  # the same key while processing: 202 again
        assert (again[0], again[1]["repayment_id"], again[2].get("Idempotent-Replayed")) == (
            202,
            accepted["repayment_id"],
            "true",
        )
        final, seen_final = await until_final(session, replica.url, accepted["repayment_id"])
        assert final["status"] == "succeeded" and final["settled_at"] is not None
        assert 1.9 <= seen_final - sent <= 4.0, seen_final - sent  # the bank's 2 s, not the answer's time
        await got.until(lambda r: bool(r.deliveries))
        [delivery] = got.deliveries
        assert delivery.signed
        assert delivery.body == {
            "repayment_id": accepted["repayment_id"],
            "idempotency_key": "k-2s",
            "status": "succeeded",
            "code": None,
            "amount_fen": 1000,
            "settled_at": final["settled_at"],
        }
        replay = await post(session, replica.url, "k-2s", body())  # then the final answer
        assert (replay[0], replay[1]) == (200, final)
        assert await metric(session, replica.url, "surge_gateway_callbacks_total", outcome="delivered") == 1
        assert await metric(session, replica.url, "surge_gateway_settle_seconds_count", channel="ICBC") == 1


async def test_a_bank_refusal_releases_the_days_reservation(start_replica: Any, tmp_path: Path) -> None:
    channel = {"card_daily_fen": 2000, "settle_fail_ratio": 1.0, "settle_ms": {"median": 300, "p99": 300}}
    replica = start_replica(async_config(tmp_path, channel))
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        first = await post(session, replica.url, "k-r1", body(amount=1500))
        assert first[0] == 202
        # 1500 of the card's 2000 are reserved while the bank has not answered: 1000 more does not fit today.
        second = await post(session, replica.url, "k-r2", body(amount=1000))
        assert (second[0], second[1]["code"], second[1]["remaining_fen"]) == (422, "DAILY_LIMIT_EXCEEDED", 500)
        final, _ = await until_final(session, replica.url, first[1]["repayment_id"])
        assert (final["status"], final["code"]) == ("failed", "BANK_DECLINED")
        third = await post(session, replica.url, "k-r3", body(amount=1000))  # the refusal gave the room back
        assert third[0] == 202, third
        assert (await post(session, replica.url, "k-r1", body(amount=1500)))[:2] == (200, final)
        assert await metric(session, replica.url, "surge_gateway_settlements_total", channel="ICBC", outcome="failed")


async def test_settlement_is_paced_by_the_bank_quota_and_the_backlog_drains(start_replica: Any, tmp_path: Path) -> None:
    replica = start_replica(async_config(tmp_path, {"tps": 10, "settle_ms": {"median": 0, "p99": 0}}))
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        answers = await asyncio.gather(*(post(session, replica.url, f"k-q{n}", body(card=f"c{n}")) for n in range(30)))
        accepted_at = time.monotonic()
        assert {status for status, _, _ in answers} == {202}
        backlog = await metric(session, replica.url, "surge_gateway_settlement_backlog", channel="ICBC")
        assert backlog >= 10  # three seconds of quota cannot be settled at once
        finals = await asyncio.gather(*(until_final(session, replica.url, a["repayment_id"]) for _, a, _ in answers))
        assert all(state["status"] == "succeeded" for state, _ in finals)
        assert max(seen for _, seen in finals) - accepted_at >= 1.8  # 30 payments at 10/s: two quota periods
        assert await metric(session, replica.url, "surge_gateway_settlement_backlog", channel="ICBC") == 0


async def test_a_settlement_stall_holds_every_answer_until_it_ends(start_replica: Any, tmp_path: Path) -> None:
    replica = start_replica(async_config(tmp_path, {"settle_ms": {"median": 50, "p99": 50}}))
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        fault = {"kind": "settlement_stall", "duration_s": 1.5}
        async with session.post(f"{replica.url}/admin/faults", json=fault, headers=ADMIN) as response:
            assert response.status == 201, await response.text()
        stalled_at = time.monotonic()
        answers = await asyncio.gather(*(post(session, replica.url, f"k-s{n}", body(card=f"c{n}")) for n in range(5)))
        await asyncio.sleep(0.5)
        assert await metric(session, replica.url, "surge_gateway_settlement_backlog", channel="ICBC") == 5
        finals = await asyncio.gather(*(until_final(session, replica.url, a["repayment_id"]) for _, a, _ in answers))
        assert min(seen for _, seen in finals) - stalled_at >= 1.4


async def test_lost_bank_answers_are_asked_for_again(start_replica: Any, tmp_path: Path) -> None:
    channel = {"unknown_ratio": 0.5, "unknown_ms": 200, "settle_ms": {"median": 50, "p99": 50}}
    replica = start_replica(async_config(tmp_path, channel))
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        answers = await asyncio.gather(*(post(session, replica.url, f"k-u{n}", body(card=f"c{n}")) for n in range(20)))
        finals = await asyncio.gather(*(until_final(session, replica.url, a["repayment_id"]) for _, a, _ in answers))
        assert all(state["status"] == "succeeded" for state, _ in finals)
        steps = "surge_gateway_settlements_total"
        unknown = await metric(session, replica.url, steps, channel="ICBC", outcome="unknown")
        assert unknown >= 1  # P(no loss in 20 at 50 %) is one in a million
        assert await metric(session, replica.url, steps, channel="ICBC", outcome="succeeded") == 20


async def test_lost_and_duplicated_callbacks_are_retried_and_counted(start_replica: Any, tmp_path: Path) -> None:
    replica = start_replica(async_config(tmp_path, {"settle_ms": {"median": 20, "p99": 20}}))
    payments = 40
    async with receiver() as got, aiohttp.ClientSession(timeout=TIMEOUT) as session:
        for kind in ("callback_loss", "callback_duplicate"):
            fault = {"kind": kind, "ratio": 0.5, "duration_s": 60}
            async with session.post(f"{replica.url}/admin/faults", json=fault, headers=ADMIN) as response:
                assert response.status == 201, await response.text()
        answers = await asyncio.gather(
            *(
                post(session, replica.url, f"k-c{n}", {**body(card=f"c{n}"), "notify_url": got.url})
                for n in range(payments)
            )
        )
        ids = {a["repayment_id"] for _, a, _ in answers}
        await got.until(lambda r: set(r.by_id()) == ids)
        await asyncio.sleep(0.5)  # a duplicate follows its delivery at once
        assert set(got.by_id()) == ids  # every payment was learned, lost first deliveries included
        assert all(d.signed for d in got.deliveries)
        dropped = await metric(session, replica.url, "surge_gateway_callbacks_total", outcome="dropped")
        duplicate = await metric(session, replica.url, "surge_gateway_callbacks_total", outcome="duplicate")
        delivered = await metric(session, replica.url, "surge_gateway_callbacks_total", outcome="delivered")
        assert 5 <= dropped <= 35 and 5 <= duplicate <= 35  # 50 % of 40, far outside a binomial's tails
        assert delivered == payments
        assert len(got.deliveries) == payments + duplicate  # each duplicate reached the receiver twice
        assert sum(1 for ds in got.by_id().values() if len(ds) == 2) == duplicate


async def test_a_refused_callback_is_retried_on_the_documented_schedule(start_replica: Any, tmp_path: Path) -> None:
    replica = start_replica(async_config(tmp_path, {"settle_ms": {"median": 0, "p99": 0}}))
    async with receiver(status=lambda n: 500 if n < 3 else 200) as got, aiohttp.ClientSession(timeout=TIMEOUT) as s:
        await post(s, replica.url, "k-retry", {**body(), "notify_url": got.url})
        await got.until(lambda r: len(r.deliveries) >= 4)
        gaps = [later.at - earlier.at for earlier, later in zip(got.deliveries, got.deliveries[1:], strict=False)]
        # 250 ms, then doubling: 0.25, 0.5, 1 s (each at least its wait, plus a delivery's own time)
        assert [round(gap, 1) >= want for gap, want in zip(gaps, (0.25, 0.5, 1.0), strict=True)] == [True] * 3, gaps
        assert await metric(s, replica.url, "surge_gateway_callbacks_total", outcome="refused") == 3


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://example.com/cb", "loopback"),
        ("http://10.0.0.1:8080/cb", "loopback"),
        ("ftp://127.0.0.1/cb", "http"),
        (17, "string"),
    ],
)
async def test_a_notify_url_that_is_not_loopback_http_is_a_400(
    make_client: Any, make_config: Any, url: object, why: str
) -> None:
    client = await make_client(make_config(channels=[ASYNC_CHANNEL]))
    response = await client.post(
        "/v1/repayments", json={**body(), "notify_url": url}, headers={"Idempotency-Key": "k-bad-url"}
    )
    assert response.status == 400
    assert response.headers["Content-Type"].startswith("application/problem+json")
    problem = await response.json(content_type=None)
    assert problem["code"] == "VALIDATION_ERROR"
    assert [e["field"] for e in problem["errors"]] == ["notify_url"] and why in problem["errors"][0]["message"]
    assert (await client.get("/v1/repayments/none")).status == 404  # nothing was recorded either way


async def test_a_notify_url_on_a_sync_channel_is_a_400(make_client: Any, make_config: Any) -> None:
    client = await make_client(make_config())
    response = await client.post(
        "/v1/repayments",
        json={**body(), "notify_url": "http://127.0.0.1:9/cb"},
        headers={"Idempotency-Key": "k-sync-url"},
    )
    problem = await response.json(content_type=None)
    assert response.status == 400 and "asynchronous" in problem["errors"][0]["message"]


@pytest.mark.parametrize(
    ("channel", "named"),
    [
        ({"settlement": "later"}, "'channels.0.settlement'"),
        ({"settlement": "async", "settle_fail_ratio": 1.5}, "'channels.0.settle_fail_ratio' must be <= 1"),
        ({"settlement": "async", "unknown_ms": 0}, "'channels.0.unknown_ms' must be > 0"),
        ({"settlement": "async", "settle_ms": {"median": 500, "p99": 100}}, "'channels.0.settle_ms'"),
        ({"unknown_ratio": 0.1}, 'unknown_ratio applies only to a channel with settlement = "async"'),
    ],
)
def test_a_bad_settlement_key_is_refused_naming_it(channel: dict[str, Any], named: str) -> None:
    """The message `python -m mock_gateway` prints before exiting 2 (the process itself: the test below)."""
    base = {"code": "ICBC", "single_fen": 100, "card_daily_fen": 1000}
    with pytest.raises(ConfigError) as refused:
        load_config(None, env={}, overrides={"channels": [{**base, **channel}]})
    assert named in str(refused.value)


def test_an_unknown_settlement_key_exits_2_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "gateway.json"
    config.write_text(json.dumps(merge({}, {"settlement": {"notify_secrte": "x"}})))
    done = subprocess.run(
        [sys.executable, "-m", "mock_gateway", "--config", str(config), "--port", "0"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2 and "unknown key 'settlement.notify_secrte'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


async def test_a_callback_fault_on_one_channel_spares_the_others(start_replica: Any, tmp_path: Path) -> None:
    cmb = {**ASYNC_CHANNEL, "code": "CMB", "settle_ms": {"median": 0, "p99": 0}}
    config = async_config(tmp_path, {"settle_ms": {"median": 0, "p99": 0}})
    replica = start_replica({**config, "channels": [*config["channels"], cmb]})
    async with receiver() as got, aiohttp.ClientSession(timeout=TIMEOUT) as session:
        fault = {"kind": "callback_loss", "ratio": 1.0, "duration_s": 60, "channel": "CMB"}
        async with session.post(f"{replica.url}/admin/faults", json=fault, headers=ADMIN) as response:
            assert response.status == 201, await response.text()
        for n, channel in enumerate(("ICBC", "CMB")):
            await post(session, replica.url, f"k-ch{n}", {**body(channel=channel), "notify_url": got.url})
        await got.until(lambda r: len(r.by_id()) == 2)
        dropped = await metric(session, replica.url, "surge_gateway_callbacks_total", outcome="dropped")
    assert dropped == 1  # CMB's first delivery only (a fault on every channel at ratio 1 would drop both)
    assert sorted(d.body["idempotency_key"] for d in got.deliveries) == ["k-ch0", "k-ch1"]  # CMB's on its retry
