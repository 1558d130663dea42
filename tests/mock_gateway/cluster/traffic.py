"""A small aiohttp client for the cluster tests: repaying users that retry with the same key.

Not Locust (it would monkey-patch the test process); just enough to put steady, bounded load on a cluster
and to remember every answer, so the tests can compare what clients were told with what the ledger holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

FINAL = {201, 422}  # a repayment (or a business decline) the client may stop retrying on


@dataclass
class Payment:
    key: str
    body: dict[str, Any]
    status: int = 0
    repayment_id: str | None = None
    replica: str | None = None
    sent_at: float = 0.0  # monotonic, when the first attempt left
    answered_at: float = 0.0
    errors: list[str] = field(default_factory=list)  # every non-final answer the client saw, in order


def repayment(user: str, card: str, amount_fen: int, channel: str = "ICBC") -> dict[str, Any]:
    return {"user_id": user, "card_id": card, "channel": channel, "amount_fen": amount_fen}


async def pay(
    session: aiohttp.ClientSession, url: str, payment: Payment, max_attempts: int = 20, pause_s: float = 0.05
) -> Payment:
    """POST with the same Idempotency-Key until a final answer or `max_attempts` (bounded by design)."""
    payment.sent_at = time.monotonic()
    for _ in range(max_attempts):
        try:
            async with session.post(
                f"{url}/v1/repayments", json=payment.body, headers={"Idempotency-Key": payment.key}
            ) as response:
                data = await response.json(content_type=None)
                payment.status = response.status
                payment.replica = response.headers.get("X-Replica")
                payment.answered_at = time.monotonic()
                if response.status in FINAL:
                    payment.repayment_id = data.get("repayment_id")
                    return payment
                payment.errors.append(f"{response.status} {data.get('code')} via {payment.replica}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            payment.errors.append(type(exc).__name__)
        await asyncio.sleep(pause_s)
    return payment


async def steady_load(
    url: str,
    workers: int,
    duration_s: float,
    cards: int = 4,
    amount_fen: int = 50_000,
    *,
    stop: asyncio.Event | None = None,
    payments: list[Payment] | None = None,
) -> list[Payment]:
    """`workers` clients each paying back to back with fresh keys for `duration_s` seconds, or until `stop` is
    set (then `duration_s` is only a safety bound); every payment is appended to `payments` as it starts, so a
    test can wait on what the load has done so far rather than on time."""
    counter = itertools.count()
    payments = [] if payments is None else payments
    stop_at = time.monotonic() + duration_s
    timeout = aiohttp.ClientTimeout(total=10)

    async def worker(session: aiohttp.ClientSession, w: int) -> None:
        while time.monotonic() < stop_at and not (stop is not None and stop.is_set()):
            n = next(counter)
            card = f"card-{n % cards}"
            p = Payment(f"load-{w}-{n}", repayment(f"user-{n % cards}", card, amount_fen))
            payments.append(p)
            await pay(session, url, p)

    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(session, w) for w in range(workers)))
    return payments


def ledger_rows(path: Path) -> list[dict[str, Any]]:
    """The `repayments` table (docs/internals.md §2), read-only."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM repayments")]
