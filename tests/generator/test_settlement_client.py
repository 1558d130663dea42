"""The client of an asynchronous gateway, through a real Locust subprocess against a scripted one (black box).

The script answers every payment 202 + Location + poll_after_ms and settles it SETTLE_S later — refused by the
bank (BANK_DECLINED) when its amount is a multiple of 3 — then serves the status and, when the request named a
`notify_url`, delivers signed callbacks: each one twice (a duplicate), redelivered after a 500, and preceded by
one unsigned and one wrongly signed delivery, which the receiver must refuse and count.
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
import pytest
from aiohttp import web

from tests.support.procs import run_locust, serving
from tests.support.runs import generator, history

SECRET = "test-notify-secret"
SETTLE_S = 1.0
DURATION_S = 4
RATE = 15
LEAD_S = 8.0  # two Locust processes boot at once on a busy machine before t=0


def scenario(mode: str) -> str:
    return f"""
name = "async-{mode}"
duration_s = {DURATION_S}
seed = 7
[population]
users = 200
bill_fen = {{ median = 100000, p99 = 400000 }}
[[rate]]
at_s = 0
per_s = {RATE}
[client]
timeout_s = 1.0
max_retries = 2
settlement = "{mode}"
settle_timeout_s = 3
callback_fail_ratio = {0.3 if mode == "callback" else 0.0}
notify_secret = "{SECRET}"
[arrivals]
process = "even"
pool = 40
"""


class AsyncGateway:
    def __init__(self) -> None:
        self.payments: dict[str, dict[str, Any]] = {}
        self.deliveries: Counter[str] = Counter()
        self.session: aiohttp.ClientSession | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def create(self, request: web.Request) -> web.Response:
        key = request.headers["Idempotency-Key"]
        body = await request.json()
        payment = self.payments.get(key)
        if payment is None:
            payment = self.payments[key] = {"repayment_id": f"rp_{key}", "key": key, "status": "processing",
                                            "code": None, "amount_fen": body["amount_fen"]}  # fmt: skip
            task = asyncio.create_task(self.settle(payment, body.get("notify_url")))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        answer = {"repayment_id": payment["repayment_id"], "status": "processing", "poll_after_ms": 300}
        headers = {"Location": f"/v1/repayments/{payment['repayment_id']}", "Retry-After": "1", "X-Replica": "s1"}
        return web.json_response(answer, status=202, headers=headers)

    async def status(self, request: web.Request) -> web.Response:
        rid = request.match_info["rid"]
        payment = next(p for p in self.payments.values() if p["repayment_id"] == rid)
        return web.json_response({"repayment_id": rid, "status": payment["status"], "code": payment["code"]})

    async def settle(self, payment: dict[str, Any], notify_url: str | None) -> None:
        await asyncio.sleep(SETTLE_S)
        failed = payment["amount_fen"] % 3 == 0
        payment["status"], payment["code"] = ("failed", "BANK_DECLINED") if failed else ("succeeded", None)
        if not notify_url:
            return
        body = json.dumps({"repayment_id": payment["repayment_id"], "idempotency_key": payment["key"],
                           "status": payment["status"], "code": payment["code"],
                           "amount_fen": payment["amount_fen"], "settled_at": "now"}).encode()  # fmt: skip
        good = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert self.session is not None
        for signature in (None, "sha256=" + "0" * 64):
            headers = {} if signature is None else {"Surge-Signature": signature}
            async with self.session.post(notify_url, data=body, headers=headers) as answer:
                self.deliveries[f"forged {answer.status}"] += 1
        for _copy in range(2):  # at least once: the second is a duplicate
            for _try in range(6):
                async with self.session.post(notify_url, data=body, headers={"Surge-Signature": good}) as answer:
                    self.deliveries[str(answer.status)] += 1
                    if answer.status == 200:
                        break
                await asyncio.sleep(0.1)


async def drive(tmp_path: Path, mode: str, t0: float) -> tuple[Path, AsyncGateway, int]:
    gateway = AsyncGateway()
    gateway.session = aiohttp.ClientSession()
    app = web.Application()
    app.router.add_post("/v1/repayments", gateway.create)
    app.router.add_get("/v1/repayments/{rid}", gateway.status)
    path = tmp_path / f"{mode}.toml"
    path.write_text(scenario(mode), encoding="utf-8")
    out = tmp_path / mode
    async with serving(app) as url:
        try:
            rc = await run_locust(url, path, out, "--surge-start-unix", repr(t0), timeout_s=60)
        finally:
            for task in list(gateway.tasks):
                task.cancel()
            await gateway.session.close()
    return out, gateway, rc


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, AsyncGateway, int]]:
    tmp_path = tmp_path_factory.mktemp("async")
    t0 = time.time() + LEAD_S

    async def both() -> list[tuple[Path, AsyncGateway, int]]:
        return list(await asyncio.gather(drive(tmp_path, "poll", t0), drive(tmp_path, "callback", t0)))

    poll, callback = asyncio.run(both())
    return {"poll": poll, "callback": callback}


def accepted(out: Path) -> list[dict[str, str]]:
    return [row for row in history(out) if row["status"] == "202"]


@pytest.mark.parametrize("mode", ["poll", "callback"])
def test_time_to_final_is_the_settlement_delay_and_acceptance_stays_fast(
    runs: dict[str, tuple[Path, AsyncGateway, int]], mode: str
) -> None:
    out, _, rc = runs[mode]
    assert rc == 0, (out / "locust" / "stdout.log").read_text()
    rows = accepted(out)
    assert len(rows) == DURATION_S * RATE
    assert generator(out)["valid"], "watching settlement never delays an arrival"
    for row in rows:
        assert row["settlement"] in ("succeeded", "failed"), row
        assert (row["settle_code"] == "BANK_DECLINED") == (row["settlement"] == "failed")
        assert (int(row["amount_fen"]) % 3 == 0) == (row["settlement"] == "failed")
        acceptance = float(row["done"]) - float(row["intended"])
        to_final = float(row["final_at"]) - float(row["intended"])
        assert acceptance < 0.5, row
        # the bank's delay, plus at most one poll interval (300 ms) and a loaded machine's slack
        assert SETTLE_S <= to_final < SETTLE_S + 2.0, row  # a poll interval, and a busy machine's slack


def test_a_poller_honours_poll_after_ms(runs: dict[str, tuple[Path, AsyncGateway, int]]) -> None:
    rows = accepted(runs["poll"][0])
    polls = [int(row["polls"]) for row in rows]
    # settled after 1 s, polled every 300 ms: 3 to 5 polls, never one (which would ignore the wait) or a storm
    assert all(3 <= n <= 6 for n in polls), Counter(polls)
    assert all(row["callbacks"] == "0" for row in rows)


def test_callbacks_are_verified_acknowledged_retried_and_duplicates_counted(
    runs: dict[str, tuple[Path, AsyncGateway, int]],
) -> None:
    out, gateway, _ = runs["callback"]
    rows = accepted(out)
    assert all(row["polls"] == "0" for row in rows)
    assert all(row["callback_status"] == row["settlement"] for row in rows)
    assert all(int(row["callback_dups"]) >= 1 for row in rows), "each payment was delivered twice"
    refused = sum(int(row["callback_refused"]) for row in rows)
    assert refused == gateway.deliveries["500"] > 0, "about 30 % of deliveries answered 500 on purpose"
    assert sum(int(row["callbacks"]) for row in rows) == gateway.deliveries["200"] + gateway.deliveries["500"]
    assert gateway.deliveries["forged 401"] == 2 * len(rows) and not gateway.deliveries["forged 200"]
    counters = json.loads((out / "settlement" / "worker-0.json").read_text(encoding="utf-8"))
    assert counters == {"bad_signature": 2 * len(rows), "unknown_key": 0, "malformed": 0}


def test_polling_and_callbacks_agree_on_every_payment(runs: dict[str, tuple[Path, AsyncGateway, int]]) -> None:
    def outcomes(out: Path) -> Counter[tuple[str, str, str, str]]:
        return Counter((r["user_id"], r["card_id"], r["amount_fen"], r["settlement"]) for r in accepted(out))

    assert outcomes(runs["poll"][0]) == outcomes(runs["callback"][0])
