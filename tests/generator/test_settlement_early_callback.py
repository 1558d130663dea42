"""Callbacks that reach the client before it has read the answer to its POST (black box: a real Locust
subprocess against a scripted gateway that commits, settles at once and delivers before it answers).

Payments take turns in three orders: the signed callback delivered and acknowledged, then the 202 answered
(`early`); the callback delivered, then the answer held past the client's `timeout_s`, so the client records a
TIMEOUT and, with no retries, never sends that key again (`timed_out`); the 202 first, the callback after
(`late`, the ordinary order). A client that drops a delivery for a key whose 202 it has not read yet leaves the
payment `processing` (a false `stuck`) while the gateway marked its callback delivered; one that ignores the
callback of a POST it timed out on loses an outcome the target gave.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pandas as pd
import pytest
from aiohttp import web

from reports.frames import read_history
from reports.invariants.check import check
from tests.support.procs import run_locust, serving
from tests.support.runs import history

SECRET = "test-notify-secret"
TIMEOUT_S = 0.8
DURATION_S = 3
RATE = 10
LEAD_S = 6.0
ORDERS = ("early", "timed_out", "late")

SCENARIO = f"""
name = "async-early"
duration_s = {DURATION_S}
seed = 11
[population]
users = 200
bill_fen = {{ median = 100000, p99 = 400000 }}
[[rate]]
at_s = 0
per_s = {RATE}
[client]
timeout_s = {TIMEOUT_S}
max_retries = 0
settlement = "callback"
settle_timeout_s = 3
notify_secret = "{SECRET}"
[arrivals]
process = "even"
pool = 40
"""


class EagerGateway:
    """Accepts, settles and delivers the callback before its own 202 leaves (ORDERS, by arrival)."""

    def __init__(self) -> None:
        self.payments: dict[str, dict[str, Any]] = {}
        self.session: aiohttp.ClientSession | None = None
        self.acks: Counter[str] = Counter()
        self.tasks: set[asyncio.Task[None]] = set()

    async def create(self, request: web.Request) -> web.Response:
        key = request.headers["Idempotency-Key"]
        body = await request.json()
        order = ORDERS[len(self.payments) % len(ORDERS)]
        failed = body["amount_fen"] % 3 == 0
        payment = self.payments[key] = {
            "repayment_id": f"rp_{key}",
            "key": key,
            "order": order,
            "status": "failed" if failed else "succeeded",
            "code": "BANK_DECLINED" if failed else None,
            "amount_fen": body["amount_fen"],
            "user_id": body["user_id"],
            "card_id": body["card_id"],
            "channel": body["channel"],
        }
        if order != "late":
            await self.deliver(payment, body["notify_url"])
        if order == "timed_out":
            await asyncio.sleep(TIMEOUT_S + 0.7)
        if order == "late":
            task = asyncio.create_task(self.deliver(payment, body["notify_url"], after_s=0.2))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        answer = {"repayment_id": payment["repayment_id"], "status": "processing", "poll_after_ms": 300}
        headers = {"Location": f"/v1/repayments/{payment['repayment_id']}"}
        return web.json_response(answer, status=202, headers=headers)

    async def deliver(self, payment: dict[str, Any], notify_url: str, after_s: float = 0.0) -> None:
        await asyncio.sleep(after_s)
        body = json.dumps({"repayment_id": payment["repayment_id"], "idempotency_key": payment["key"],
                           "status": payment["status"], "code": payment["code"],
                           "amount_fen": payment["amount_fen"], "settled_at": "now"}).encode()  # fmt: skip
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert self.session is not None
        async with self.session.post(notify_url, data=body, headers={"Surge-Signature": signature}) as answer:
            self.acks[f"{payment['order']} {answer.status}"] += 1

    def ledger(self) -> pd.DataFrame:
        columns = ("repayment_id", "status", "amount_fen", "user_id", "card_id", "channel")
        rows = [{"idempotency_key": p["key"], "business_date": "2026-12-07", **{c: p[c] for c in columns}}
                for p in self.payments.values()]  # fmt: skip
        return pd.DataFrame(rows)


async def drive(tmp_path: Path) -> tuple[Path, EagerGateway, int]:
    gateway = EagerGateway()
    gateway.session = aiohttp.ClientSession()
    app = web.Application()
    app.router.add_post("/v1/repayments", gateway.create)
    path = tmp_path / "early.toml"
    path.write_text(SCENARIO, encoding="utf-8")
    out = tmp_path / "early"
    t0 = time.time() + LEAD_S
    async with serving(app) as url:
        try:
            rc = await run_locust(url, path, out, "--surge-start-unix", repr(t0), timeout_s=60)
        finally:
            for task in list(gateway.tasks):
                task.cancel()
            await gateway.session.close()
    return out, gateway, rc


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, EagerGateway, int]:
    return asyncio.run(drive(tmp_path_factory.mktemp("early")))


def test_every_delivery_was_acknowledged_and_reached_its_payment(run: tuple[Path, EagerGateway, int]) -> None:
    out, gateway, rc = run
    assert rc == 1, (out / "locust" / "stdout.log").read_text()  # the timed-out POSTs are failures
    assert len(gateway.payments) == DURATION_S * RATE
    assert set(gateway.acks) == {f"{order} 200" for order in ORDERS}, gateway.acks
    rows = {row["key"]: row for row in history(out)}
    assert set(rows) == set(gateway.payments)
    for key, payment in gateway.payments.items():
        row = rows[key]
        expected_status = "0" if payment["order"] == "timed_out" else "202"
        assert (row["status"], row["settlement"]) == (expected_status, payment["status"]), (payment["order"], row)
        assert row["callback_status"] == payment["status"] and row["callbacks"] == "1", row
        assert row["settle_code"] == (payment["code"] or ""), row
        assert float(row["final_at"]) > 0, row
    counters = json.loads((out / "settlement" / "worker-0.json").read_text(encoding="utf-8"))
    assert counters == {"bad_signature": 0, "unknown_key": 0, "malformed": 0}


def test_the_invariants_see_no_stuck_no_lost_and_no_phantom(run: tuple[Path, EagerGateway, int]) -> None:
    out, gateway, _ = run
    report = check(read_history(out / "history"), gateway.ledger(), {}, None, settle_watched=True)
    assert report.settlement
    assert {name: found for name, found in report.violations.items() if found} == {}
    assert not report.unknown
    assert report.outcomes["unknown"] == 0, "a timed-out POST whose callback came is judged by that callback"
