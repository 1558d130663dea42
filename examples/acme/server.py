"""acme-pay: a small repayment service with an API deliberately unlike surge's own, on PostgreSQL.

What a team's staging service might look like, for docs/targets.md and the tests to drive with a target
profile (examples/acme/target.toml):

    POST /api/v2/pay   header X-Request-Id (idempotency), JSON {"uid", "cardNo", "bank", "amt", "reqNo"}
                       `amt` in yuan as a decimal string ("1234.50")
    200 {"code": "0000", "data": {"payNo": "P…", "bizDate": "YYYY-MM-DD"}}    paid (a replay: the same answer)
    200 {"code": "E1001", "msg": "daily limit"}      the card's daily total would pass DAILY_LIMIT_FEN
    200 {"code": "E1002", "msg": "single limit"}     over SINGLE_LIMIT_FEN
    400 {"code": "E4000", "msg": …}                   malformed
    401 {"code": "E4010"}                             without `Authorization: Bearer <--token>` (when one is set)
    429 {"code": "E4290"} + Retry-After: 1           over --tps requests this second

Payments live in PostgreSQL (`payments`, unique on req_no). `--bug-every N` switches on a real bug: every
Nth payment is acknowledged with 200/0000 while its insert is rolled back — a lost payment that only a check
against the ledger can find.

    python examples/acme/server.py --dsn postgresql://acme:PW@127.0.0.1:5432/acme --port 9000 \
        [--token T] [--tps 40] [--bug-every 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import decimal
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from aiohttp import web
from aiohttp.typedefs import Handler

SHANGHAI = ZoneInfo("Asia/Shanghai")
SINGLE_LIMIT_FEN = 5_000_000
DAILY_LIMIT_FEN = 5_000_000
SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
  pay_no     TEXT PRIMARY KEY,
  req_no     TEXT NOT NULL UNIQUE,
  uid        TEXT NOT NULL,
  card_no    TEXT NOT NULL,
  bank       TEXT NOT NULL,
  amount_fen BIGINT NOT NULL,
  biz_date   DATE NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""
POOL_SIZE = 8
SETTINGS = web.AppKey("settings", argparse.Namespace)
STATE: web.AppKey[dict[str, Any]] = web.AppKey("state")


def reply(status: int, body: dict[str, object], **headers: str) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=lambda o: json.dumps(o, ensure_ascii=False))


def parse_yuan(text: object) -> int:
    """ "1234.5" -> 123450 fen; anything else (floats, negative, more than two places) is a ValueError."""
    if not isinstance(text, str):
        raise ValueError("amt must be a decimal string")
    amount = decimal.Decimal(text)
    fen = amount * 100
    if fen != fen.to_integral_value() or fen <= 0:
        raise ValueError("amt must be positive with at most two decimal places")
    return int(fen)


async def pay(request: web.Request) -> web.Response:
    settings, state = request.app[SETTINGS], request.app[STATE]
    second = int(time.monotonic())
    if state["second"] != second:
        state["second"], state["count"] = second, 0
    state["count"] += 1
    if settings.tps and state["count"] > settings.tps:
        return reply(429, {"code": "E4290", "msg": "too many requests"}, **{"Retry-After": "1"})
    if settings.token and request.headers.get("Authorization") != f"Bearer {settings.token}":
        return reply(401, {"code": "E4010", "msg": "unauthorized"})
    req_no = request.headers.get("X-Request-Id", "")
    try:
        body = await request.json()
        uid, card_no, bank = str(body["uid"]), str(body["cardNo"]), str(body["bank"])
        amount = parse_yuan(body["amt"])
    except (ValueError, KeyError, TypeError) as exc:
        return reply(400, {"code": "E4000", "msg": f"bad request: {exc}"})
    if not req_no or body.get("reqNo") != req_no:
        return reply(400, {"code": "E4000", "msg": "X-Request-Id must equal reqNo"})
    if amount > SINGLE_LIMIT_FEN:
        return reply(200, {"code": "E1002", "msg": "single limit exceeded"})
    today = dt.datetime.now(SHANGHAI).date()
    async with request.app[POOL].connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (card_no,))  # one card at a time
        cur = await conn.execute("SELECT pay_no, biz_date FROM payments WHERE req_no = %s", (req_no,))
        found = await cur.fetchone()
        if found is not None:
            return reply(200, {"code": "0000", "data": {"payNo": found[0], "bizDate": found[1].isoformat()}})
        cur = await conn.execute(
            "SELECT coalesce(sum(amount_fen), 0) FROM payments WHERE card_no = %s AND biz_date = %s", (card_no, today)
        )
        used = int((await cur.fetchone())[0])  # type: ignore[index]
        if used + amount > DAILY_LIMIT_FEN:
            return reply(200, {"code": "E1001", "msg": "daily limit exceeded"})
        pay_no = f"P{uuid.uuid4().hex[:20]}"
        await conn.execute(
            "INSERT INTO payments (pay_no, req_no, uid, card_no, bank, amount_fen, biz_date) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (pay_no, req_no, uid, card_no, bank, amount, today),
        )
        state["paid"] += 1
        if settings.bug_every and state["paid"] % settings.bug_every == 0:
            raise _Rollback(pay_no, today)  # leaving the transaction by an exception rolls it back
    return reply(200, {"code": "0000", "data": {"payNo": pay_no, "bizDate": today.isoformat()}})


class _Rollback(Exception):
    """The injected bug: the transaction is rolled back, the client is told it was paid."""

    def __init__(self, pay_no: str, today: dt.date) -> None:
        super().__init__(pay_no)
        self.pay_no, self.today = pay_no, today


@web.middleware
async def bug_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except _Rollback as bug:
        return reply(200, {"code": "0000", "data": {"payNo": bug.pay_no, "bizDate": bug.today.isoformat()}})
    except psycopg.Error:
        return reply(503, {"code": "E5030", "msg": "database unavailable"})


async def healthz(request: web.Request) -> web.Response:
    return reply(200, {"code": "0000"})


class Pool:
    """A fixed set of connections handed out one request at a time (psycopg-pool would do; one less package)."""

    def __init__(self, connections: list[psycopg.AsyncConnection]) -> None:
        self._free: asyncio.Queue[psycopg.AsyncConnection] = asyncio.Queue()
        for conn in connections:
            self._free.put_nowait(conn)
        self._all = connections

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        conn = await self._free.get()
        try:
            yield conn
        finally:
            self._free.put_nowait(conn)

    async def close(self) -> None:
        for conn in self._all:
            await conn.close()


POOL: web.AppKey[Pool] = web.AppKey("pool")


async def pool_lifetime(app: web.Application) -> AsyncIterator[None]:
    dsn = app[SETTINGS].dsn
    connections = [await psycopg.AsyncConnection.connect(dsn, autocommit=True) for _ in range(POOL_SIZE)]
    await connections[0].execute(SCHEMA)
    app[POOL] = Pool(connections)
    yield
    await app[POOL].close()


def create_app(settings: argparse.Namespace) -> web.Application:
    app = web.Application(middlewares=[bug_middleware])
    app[SETTINGS] = settings
    app[STATE] = {"second": 0, "count": 0, "paid": 0}
    app.cleanup_ctx.append(pool_lifetime)
    app.router.add_post("/api/v2/pay", pay)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="PostgreSQL connection string")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--token", default="", help="require Authorization: Bearer TOKEN (default: none)")
    parser.add_argument("--tps", type=int, default=0, help="answer 429 past this many requests a second (0: none)")
    parser.add_argument("--bug-every", type=int, default=0, help="acknowledge and roll back every Nth payment")
    settings = parser.parse_args()
    web.run_app(create_app(settings), host=settings.host, port=settings.port, print=None)


if __name__ == "__main__":
    main()
