"""A target profile for an asynchronous API of its own shape: `outcome = "pending"`, `[settle.poll]`,
`[settle.callback]`, validated before the run (exit 2, one line) and driven through a real Locust subprocess.

The scripted target answers `200 {"state": "ACCEPTED", "order": {"id": …}}`, settles an order SETTLE_S later
(refused when the amount is a multiple of 3), serves `GET /orders/{id}` as `{"state": "PENDING" | "DONE" |
"REJECTED"}`, and — when the body named a notify URL — POSTs `{"merchant_key", "result": "OK" | "FAIL"}`
signed in `X-Sig` (bare hex HMAC), expecting the body `success` back.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from loadtests.scenario.profile import check_settlement, load_profile
from loadtests.scenario.profile_templates import ProfileError
from tests.support.procs import SURGE, run_locust, serving
from tests.support.runs import history

SECRET = "orders-secret"
SETTLE_S = 0.8
LEAD_S = 8.0
PROFILE = """
name = "orders"
base_url = "http://127.0.0.1:9"

[request]
path = "/orders"
body = '{"merchant_key": "{key}", "user": "{user_id}", "card": "{card_id}", "cents": {amount_fen}NOTIFY}'

[[response.rules]]
status = 200
json = { "/state" = "ACCEPTED" }
outcome = "pending"
payment_id = "/order/id"

[[response.rules]]
status = 200
json = { "/state" = "DONE" }
outcome = "succeeded"

[settle.poll]
path = "/orders/{payment_id}"
poll_after_ms = 300
[[settle.poll.rules]]
status = 200
json = { "/state" = "DONE" }
outcome = "succeeded"
[[settle.poll.rules]]
status = 200
json = { "/state" = "REJECTED" }
outcome = "declined"
code = "ORDER_REJECTED"
[[settle.poll.rules]]
status = 200
outcome = "pending"
"""
CALLBACK = """
[settle.callback]
key = "/merchant_key"
status = "/result"
succeeded = "OK"
failed = "FAIL"
ack_body = "success"
signature_header = "X-Sig"
secret = "${ORDERS_SECRET}"
"""


def profile_text(mode: str) -> str:
    notify = ', "notify": "{notify_url}"' if mode == "callback" else ""
    return PROFILE.replace("NOTIFY", notify) + (CALLBACK if mode == "callback" else "")


def scenario(mode: str) -> str:
    return f"""
name = "orders-{mode}"
duration_s = 3
seed = 5
[population]
users = 100
bill_fen = {{ median = 100000, p99 = 300000 }}
[[rate]]
at_s = 0
per_s = 12
[client]
timeout_s = 1.0
max_retries = 1
settlement = "{mode}"
settle_timeout_s = 3
[arrivals]
process = "even"
pool = 30
"""


class Orders:
    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.acks: Counter[str] = Counter()
        self.session: aiohttp.ClientSession | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def create(self, request: web.Request) -> web.Response:
        body = await request.json()
        order = {"id": f"o{len(self.orders) + 1}", "key": body["merchant_key"], "state": "PENDING"}
        self.orders[order["id"]] = order
        task = asyncio.create_task(self.settle(order, int(body["cents"]), body.get("notify")))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return web.json_response({"state": "ACCEPTED", "order": {"id": order["id"]}})

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response({"state": self.orders[request.match_info["oid"]]["state"]})

    async def settle(self, order: dict[str, Any], cents: int, notify: str | None) -> None:
        await asyncio.sleep(SETTLE_S)
        order["state"] = "REJECTED" if cents % 3 == 0 else "DONE"
        if notify is None:
            return
        body = json.dumps({"merchant_key": order["key"], "result": "FAIL" if cents % 3 == 0 else "OK"}).encode()
        assert self.session is not None
        for signature in ("", hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()):
            async with self.session.post(notify, data=body, headers={"X-Sig": signature}) as answer:
                self.acks[f"{answer.status} {await answer.text()}"] += 1


async def drive(tmp_path: Path, mode: str, t0: float) -> tuple[Path, Orders, int]:
    orders = Orders()
    orders.session = aiohttp.ClientSession()
    app = web.Application()
    app.router.add_post("/orders", orders.create)
    app.router.add_get("/orders/{oid}", orders.status)
    (tmp_path / f"{mode}.toml").write_text(scenario(mode), encoding="utf-8")
    (tmp_path / f"{mode}-profile.toml").write_text(profile_text(mode), encoding="utf-8")
    out = tmp_path / mode
    os.environ["ORDERS_SECRET"] = SECRET  # the Locust child inherits it
    async with serving(app) as url:
        try:
            rc = await run_locust(url, tmp_path / f"{mode}.toml", out, "--surge-start-unix", repr(t0),
                                  "--target", str(tmp_path / f"{mode}-profile.toml"), timeout_s=60)  # fmt: skip
        finally:
            for task in list(orders.tasks):
                task.cancel()
            await orders.session.close()
    return out, orders, rc


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Orders, int]]:
    tmp_path = tmp_path_factory.mktemp("orders")
    t0 = time.time() + LEAD_S

    async def both() -> list[tuple[Path, Orders, int]]:
        return list(await asyncio.gather(drive(tmp_path, "poll", t0), drive(tmp_path, "callback", t0)))

    poll, callback = asyncio.run(both())
    return {"poll": poll, "callback": callback}


@pytest.mark.parametrize("mode", ["poll", "callback"])
def test_a_pending_answer_is_watched_through_the_profile_until_its_final_state(
    runs: dict[str, tuple[Path, Orders, int]], mode: str
) -> None:
    out, orders, rc = runs[mode]
    assert rc == 0, (out / "locust" / "stdout.log").read_text()
    rows = history(out)
    assert len(rows) == len(orders.orders) >= 30, "every order sent (a few may drop on a busy machine's start)"
    for row in rows:
        refused = int(row["amount_fen"]) % 3 == 0
        assert row["settlement"] == ("failed" if refused else "succeeded"), row
        assert row["repayment_id"].startswith("o") and row["outcome"] == "succeeded"
        assert SETTLE_S <= float(row["final_at"]) - float(row["intended"]) < SETTLE_S + 2.0, (
            row
        )  # a poll interval, and a busy machine's slack
        if mode == "poll":
            assert int(row["polls"]) >= 2 and (row["settle_code"] == "ORDER_REJECTED") == refused
        else:
            assert row["callbacks"] == "1" and row["polls"] == "0" and row["callback_status"] == row["settlement"]
    if mode == "callback":
        assert orders.acks == {"401 ": len(rows), "200 success": len(rows)}, "unsigned refused, signed acked"
        counters = json.loads((out / "settlement" / "worker-0.json").read_text(encoding="utf-8"))
        assert counters["bad_signature"] == len(rows)


def test_settlement_mistakes_in_a_profile_are_one_line_before_anything_starts(tmp_path: Path) -> None:
    bad = {
        "no watcher": (PROFILE.split("[settle.poll]")[0], "outcome 'pending' but neither"),
        "poll placeholder": (PROFILE.replace("/orders/{payment_id}", "/orders/{order}"), "unknown placeholder"),
        "notify without callback": (PROFILE.replace("NOTIFY", ', "n": "{notify_url}"'), "{notify_url} needs"),
        "callback without notify": (PROFILE.replace("NOTIFY", "") + CALLBACK, "no {notify_url} placeholder"),
        "unsigned secret": (profile_text("callback").replace('secret = "${ORDERS_SECRET}"', ""), "needs secret"),
    }
    for name, (text, message) in bad.items():
        path = tmp_path / f"{name}.toml"
        path.write_text(text.replace("NOTIFY", ""), encoding="utf-8")
        with pytest.raises(ProfileError, match=message.replace("{", r"\{").replace("}", r"\}")):
            load_profile(path, allow_remote=False)
    good = tmp_path / "good.toml"
    good.write_text(profile_text("poll"), encoding="utf-8")
    with pytest.raises(ProfileError, match=r'settlement = "callback" but the profile has no \[settle.callback\]'):
        check_settlement(load_profile(good, allow_remote=False), "callback")
    (tmp_path / "wave.toml").write_text(scenario("callback"), encoding="utf-8")
    result = subprocess.run(
        [str(SURGE), "run", str(tmp_path / "wave.toml"), "--target", str(good), "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "[settle.callback]" in result.stderr and not (tmp_path / "run").exists()
