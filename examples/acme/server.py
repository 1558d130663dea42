"""acme-pay: a small repayment service with an API deliberately unlike surge's own, on PostgreSQL.

What a team's staging service might look like, for docs/targets.md and the tests to drive with a target
profile. Its API, its bug switches (`--bug-every`, `--async-bug-every`, `--async-reversal-every`) and its
protections (`--protected`, TLS) are described in examples/acme/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import decimal
import hashlib
import hmac
import json
import os
import secrets
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
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
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  state      TEXT NOT NULL DEFAULT 'PAID',
  notify_url TEXT
);
CREATE TABLE IF NOT EXISTS settlements (
  id         BIGSERIAL PRIMARY KEY,
  pay_no     TEXT NOT NULL,
  state      TEXT NOT NULL,
  settled_at TIMESTAMPTZ NOT NULL DEFAULT now()
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
    raw = await request.read()
    if settings.protected:
        refusal = guard(request, raw, state)
        if refusal is not None:
            return reply(401, {"code": refusal[0], "msg": refusal[1]})
    req_no = request.headers.get("X-Request-Id", "")
    try:
        body = json.loads(raw)
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
        cur = await conn.execute("SELECT pay_no, biz_date, state FROM payments WHERE req_no = %s", (req_no,))
        found = await cur.fetchone()
        if found is not None:
            accepted = settings.async_ and found[2] == "ACCEPTED"
            code, status = ("0001", 202) if accepted else ("0000", 200)
            return reply(status, {"code": code, "data": {"payNo": found[0], "bizDate": found[1].isoformat()}})
        cur = await conn.execute(
            "SELECT coalesce(sum(amount_fen), 0) FROM payments WHERE card_no = %s AND biz_date = %s", (card_no, today)
        )
        used = int((await cur.fetchone())[0])  # type: ignore[index]
        if used + amount > DAILY_LIMIT_FEN:
            return reply(200, {"code": "E1001", "msg": "daily limit exceeded"})
        pay_no = f"P{uuid.uuid4().hex[:20]}"
        notify = str(body.get("notifyUrl") or "") or None
        if notify is not None and not notify.startswith(("http://127.0.0.1:", "http://localhost:")):
            return reply(400, {"code": "E4000", "msg": "notifyUrl must be on loopback"})
        await conn.execute(
            "INSERT INTO payments (pay_no, req_no, uid, card_no, bank, amount_fen, biz_date, state, notify_url) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (pay_no, req_no, uid, card_no, bank, amount, today, "ACCEPTED" if settings.async_ else "PAID", notify),
        )
        if settings.async_:
            return reply(202, {"code": "0001", "data": {"payNo": pay_no, "bizDate": today.isoformat()}})
        state["paid"] += 1
        if settings.bug_every and state["paid"] % settings.bug_every == 0:
            raise _Rollback(pay_no, today)  # leaving the transaction by an exception rolls it back
    return reply(200, {"code": "0000", "data": {"payNo": pay_no, "bizDate": today.isoformat()}})


def guard(request: web.Request, raw: bytes, state: dict[str, Any]) -> tuple[str, str] | None:
    """--protected: a live token, then a signature over a fresh timestamp and a nonce never seen; the refusal
    (code, message) or None. Every check is counted in `state` for GET /_stats."""
    settings = request.app[SETTINGS]
    token = request.headers.get("Authorization", "").removeprefix("Bearer ")
    expires = state["tokens"].get(token)
    if expires is None or expires <= time.monotonic():
        state["expired_token" if expires is not None else "bad_token"] += 1
        return "E4012", "token missing or expired"
    stamp, nonce = request.headers.get("X-Timestamp", ""), request.headers.get("X-Nonce", "")
    message = "\n".join((request.method, request.path_qs, stamp, nonce, raw.decode("utf-8", "replace")))
    wanted = base64.b64encode(hmac.new(settings.sign_key.encode(), message.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(wanted, request.headers.get("X-Signature", "").encode()):
        state["bad_signature"] += 1
        return "E4011", "bad signature"
    try:
        skew_s = abs(time.time() - int(stamp) / 1000)
    except ValueError:
        skew_s = float("inf")
    state["max_skew_s"] = max(state["max_skew_s"], skew_s)
    if skew_s > settings.window_s:
        state["stale"] += 1
        return "E4011", "timestamp outside the window"
    if nonce in state["nonces"]:
        state["replayed"] += 1
        return "E4011", "nonce replayed"
    state["nonces"].add(nonce)  # a real server keeps them for the window only; acme's runs are short
    return None


async def issue_token(request: web.Request) -> web.Response:
    """OAuth 2.0 client credentials (RFC 6749 §4.4) with HTTP Basic client authentication."""
    settings, state = request.app[SETTINGS], request.app[STATE]
    form = await request.post()
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    try:
        client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
    except ValueError:
        client_id = secret = ""
    good = hmac.compare_digest(f"{client_id}:{secret}", f"{settings.client_id}:{settings.client_secret}")
    if form.get("grant_type") != "client_credentials" or scheme != "Basic" or not good:
        state["token_refused"] += 1
        return reply(401, {"error": "invalid_client"})
    token = secrets.token_hex(16)
    now = time.monotonic()
    lives_s = settings.token_ttl_s - settings.token_early_s  # --token-early-s: a server clock running ahead
    state["tokens"] = {t: at for t, at in state["tokens"].items() if at > now} | {token: now + lives_s}
    state["tokens_issued"] += 1
    return reply(200, {"access_token": token, "token_type": "Bearer", "expires_in": settings.token_ttl_s})


async def stats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    counters = ("bad_token", "expired_token", "bad_signature", "stale", "replayed", "tokens_issued", "token_refused")
    found = {name: state[name] for name in counters}
    return reply(200, {**found, "nonces": len(state["nonces"]), "max_skew_s": state["max_skew_s"]})


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


async def payment_state(request: web.Request) -> web.Response:
    async with request.app[POOL].connection() as conn:
        cur = await conn.execute("SELECT state FROM payments WHERE pay_no = %s", (request.match_info["pay_no"],))
        found = await cur.fetchone()
    if found is None:
        return reply(404, {"code": "E4040", "msg": "no such payment"})
    return reply(200, {"code": "0000", "data": {"payNo": request.match_info["pay_no"], "state": found[0]}})


async def settle_worker(app: web.Application) -> None:
    """--async: settle what is due, oldest first, then deliver the callbacks (after the commit)."""
    settings, state = app[SETTINGS], app[STATE]
    secret = os.environ.get("ACME_NOTIFY_SECRET", "").encode()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while True:
            await asyncio.sleep(0.05)
            due = dt.timedelta(milliseconds=settings.settle_ms)
            async with app[POOL].connection() as conn, conn.transaction():
                cur = await conn.execute(
                    "SELECT pay_no, req_no, notify_url FROM payments WHERE state = 'ACCEPTED' AND created_at <= "
                    "now() - %s ORDER BY created_at LIMIT 50 FOR UPDATE SKIP LOCKED",
                    (due,),
                )
                rows = await cur.fetchall()
                reversals = set()
                for pay_no, _, _ in rows:
                    state["settled"] += 1
                    if settings.async_reversal_every and state["settled"] % settings.async_reversal_every == 0:
                        reversals.add(pay_no)
                    calls = 2 if settings.async_bug_every and state["settled"] % settings.async_bug_every == 0 else 1
                    for _ in range(calls):  # the bug: a "timed-out" bank call retried without checking the first
                        await conn.execute("INSERT INTO settlements (pay_no, state) VALUES (%s, 'PAID')", (pay_no,))
                    await conn.execute("UPDATE payments SET state = 'PAID' WHERE pay_no = %s", (pay_no,))
            for pay_no, req_no, notify_url in rows:
                if notify_url:
                    body = json.dumps({"reqNo": req_no, "payNo": pay_no, "state": "PAID"}).encode()
                    signature = hmac.new(secret, body, hashlib.sha256).hexdigest()
                    task = asyncio.create_task(deliver(session, notify_url, body, signature))
                    state["deliveries"].add(task)
                    task.add_done_callback(state["deliveries"].discard)
                    if pay_no in reversals:
                        reversal = asyncio.create_task(reverse_after(app, task, pay_no))
                        state["deliveries"].add(reversal)
                        reversal.add_done_callback(state["deliveries"].discard)


async def reverse_after(app: web.Application, delivery: asyncio.Task[None], pay_no: str) -> None:
    """The --async-reversal-every bug: a reconciliation job that, once the PAID callback went out, marks the payment
    FAILED — the client was told it was paid, the ledger now says it was not."""
    await delivery
    async with app[POOL].connection() as conn, conn.transaction():
        await conn.execute("UPDATE settlements SET state = 'FAILED' WHERE pay_no = %s", (pay_no,))
        await conn.execute("UPDATE payments SET state = 'FAILED' WHERE pay_no = %s", (pay_no,))


async def deliver(session: aiohttp.ClientSession, url: str, body: bytes, signature: str) -> None:
    for attempt in range(5):
        try:
            async with session.post(url, data=body, headers={"X-Acme-Signature": signature}) as answer:
                if 200 <= answer.status < 300:
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.2 * 2**attempt)


async def worker_lifetime(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(settle_worker(app)) if app[SETTINGS].async_ else None
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


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
    app[STATE] = {"second": 0, "count": 0, "paid": 0, "tokens": {}, "nonces": set(), "max_skew_s": 0.0}
    app[STATE].update(dict.fromkeys(("bad_token", "expired_token", "bad_signature", "stale", "replayed"), 0))
    app[STATE].update(dict.fromkeys(("tokens_issued", "token_refused"), 0))
    app[STATE].update(settled=0, deliveries=set())
    app.cleanup_ctx.append(pool_lifetime)
    app.cleanup_ctx.append(worker_lifetime)
    app.router.add_post("/api/v2/pay", pay)
    app.router.add_get("/api/v2/pay/{pay_no}", payment_state)
    app.router.add_get("/healthz", healthz)
    if settings.protected:
        app.router.add_post("/oauth/token", issue_token)
        app.router.add_get("/_stats", stats)
    return app


def tls_context(settings: argparse.Namespace) -> ssl.SSLContext | None:
    if not settings.tls_cert:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    if settings.client_ca:  # mutual TLS: no client certificate signed by this CA, no handshake
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=settings.client_ca)
    return context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="PostgreSQL connection string")
    parser.add_argument("--async", dest="async_", action="store_true", help="accept now (202), settle later")
    parser.add_argument("--settle-ms", type=int, default=500, help="--async: how long after acceptance it settles")
    parser.add_argument("--async-bug-every", type=int, default=0, help="--async: settle every Nth payment twice")
    parser.add_argument(
        "--async-reversal-every", type=int, default=0, help="--async: mark every Nth payment FAILED after its callback"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--token", default="", help="require Authorization: Bearer TOKEN (default: none)")
    parser.add_argument("--tps", type=int, default=0, help="answer 429 past this many requests a second (0: none)")
    parser.add_argument("--bug-every", type=int, default=0, help="acknowledge and roll back every Nth payment")
    parser.add_argument("--protected", action="store_true", help="tokens, signatures, timestamps and nonces")
    parser.add_argument("--token-ttl-s", type=int, default=10, help="--protected: a token's lifetime")
    parser.add_argument("--window-s", type=float, default=30.0, help="--protected: accepted timestamp skew")
    parser.add_argument(
        "--token-early-s", type=float, default=0.0, help="--protected: tokens die this long before expires_in says"
    )
    parser.add_argument("--tls-cert", default="", help="serve https with this PEM certificate")
    parser.add_argument("--tls-key", default="", help="the private key of --tls-cert")
    parser.add_argument("--client-ca", default="", help="require client certificates signed by this PEM CA")
    settings = parser.parse_args()
    if settings.protected:  # secrets from the environment, never on a command line
        settings.sign_key = os.environ["ACME_SIGN_KEY"]
        settings.client_id = os.environ["ACME_CLIENT_ID"]
        settings.client_secret = os.environ["ACME_CLIENT_SECRET"]
    context = tls_context(settings)
    web.run_app(create_app(settings), host=settings.host, port=settings.port, print=None, ssl_context=context)


if __name__ == "__main__":
    main()
