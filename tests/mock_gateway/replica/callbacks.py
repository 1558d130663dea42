"""A loopback receiver for settlement callbacks, run on the test's own event loop, and small HTTP helpers for
the asynchronous-settlement tests: what a payment team's callback endpoint would see, recorded as it arrived."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

SECRET = "test-notify-secret"
ASYNC_CHANNEL: dict[str, Any] = {
    "code": "ICBC",
    "single_fen": 5_000_000,
    "card_daily_fen": 5_000_000,
    "concurrency": 1000,
    "latency_ms": {"median": 0, "p99": 0},
    "settlement": "async",
    "settle_ms": {"median": 200, "p99": 200},
}


@dataclass
class Delivery:
    at: float  # monotonic
    body: dict[str, Any]
    signed: bool


@dataclass
class Receiver:
    """Answers 200 (or `status(n)` for the n-th delivery, from 0) and keeps every delivery."""

    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    status: Callable[[int], int] = lambda _: 200
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def until(self, condition: Callable[[Receiver], bool], timeout_s: float = 20) -> None:
        """Until `condition(self)` holds after some delivery; the bound only turns a hang into a failure."""
        async with asyncio.timeout(timeout_s):
            while not condition(self):
                self.arrived.clear()
                await self.arrived.wait()

    def by_id(self) -> dict[str, list[Delivery]]:
        grouped: dict[str, list[Delivery]] = {}
        for delivery in self.deliveries:
            grouped.setdefault(delivery.body["repayment_id"], []).append(delivery)
        return grouped

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        signed = hmac.compare_digest(request.headers.get("Surge-Signature", ""), expected)
        status = self.status(len(self.deliveries))
        self.deliveries.append(Delivery(time.monotonic(), json.loads(raw), signed))
        self.arrived.set()
        return web.Response(status=status)


@asynccontextmanager
async def receiver(status: Callable[[int], int] = lambda _: 200) -> AsyncIterator[Receiver]:
    got = Receiver(status=status)
    app = web.Application()
    app.router.add_post("/callback", got.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    got.url = f"http://127.0.0.1:{port}/callback"
    try:
        yield got
    finally:
        await runner.cleanup()


async def post(
    session: aiohttp.ClientSession, base: str, key: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with session.post(f"{base}/v1/repayments", json=body, headers={"Idempotency-Key": key}) as response:
        return response.status, await response.json(content_type=None), dict(response.headers)


async def status_of(session: aiohttp.ClientSession, base: str, repayment_id: str) -> dict[str, Any]:
    async with session.get(f"{base}/v1/repayments/{repayment_id}") as response:
        assert response.status == 200, await response.text()
        data: dict[str, Any] = await response.json()
        return data


async def until_final(
    session: aiohttp.ClientSession, base: str, repayment_id: str, timeout_s: float = 30
) -> tuple[dict[str, Any], float]:
    """Poll every 20 ms until the payment is final; (its state, monotonic time it was first seen final)."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = await status_of(session, base, repayment_id)
        if state["status"] != "processing":
            return state, time.monotonic()
        assert time.monotonic() < deadline, f"{repayment_id} still processing after {timeout_s} s"
        await asyncio.sleep(0.02)


async def metric(session: aiohttp.ClientSession, base: str, name: str, **labels: str) -> float:
    """One sample of a replica's /metrics (0 when absent)."""
    async with session.get(f"{base}/metrics") as response:
        text = await response.text()
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)$"
    for line in text.splitlines():
        match = re.match(pattern, line)
        if match:
            return float(match.group(1))
    return 0.0
