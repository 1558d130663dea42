"""One gateway replica: `create_app(config)` wires the routes of CONTRACT §3 to the caps, bank and ledger.

Admission order for POST /v1/repayments (docs/gateway.md explains why this order):

    parse + validate (400/413/415)      nothing stored, a retry runs afresh
    idempotency lookup                  stored: replay it (same body) or 422 (other body)
    in-flight check                     409 + Retry-After while the same key is being processed here
    per-second caps                     429, nothing stored
    quick pre-check of the daily caps   an obvious decline skips the bank
    channel outage fault, bank call     503 CHANNEL_BUSY, nothing stored
    ledger step                         atomic re-check + record + commit; only then the answer

Every response carries `X-Replica`; every error is problem+json, including unknown paths and methods.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from aiohttp import web

from mock_gateway.admin import ADMIN_TOKEN_KEY, load_admin_token, require_admin
from mock_gateway.clock import SimClock, business_date, resets_at
from mock_gateway.config import ChannelConfig, GatewayConfig
from mock_gateway.errors import (
    PROBLEM_CONTENT_TYPE,
    ChannelBusy,
    DailyLimitExceeded,
    GatewayError,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    InvalidJson,
    LimitExceeded,
    MethodNotAllowed,
    MissingIdempotencyKey,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ReplicaUnavailable,
    SingleLimitExceeded,
    UnsupportedMediaType,
    ValidationFailed,
)
from mock_gateway.limits import Admission
from mock_gateway.quotas import Caps, Decline, Usage, check, remaining
from mock_gateway.replica.bank import Bank
from mock_gateway.replica.faults import CHANNEL_CODES_KEY, FAULTS_KEY, Faults, add_admin_routes
from mock_gateway.replica.ledger import Charge, Decide, Decision, Ledger, LedgerError, Outcome, Stored
from mock_gateway.replica.metrics import Metrics

log = logging.getLogger(__name__)

MAX_ID_CHARS: Final = 64
MAX_AMOUNT_FEN: Final = 1_000_000_000_000  # 10 billion yuan: far above any cap, far below int64
FIELDS: Final = frozenset({"user_id", "card_id", "channel", "amount_fen"})
USAGE_CACHE_MAX: Final = 10_000  # ~400 B an entry: the pre-check's guess costs at most ~4 MB of a replica's RSS
JSON_UTF8: Final = "application/json; charset=utf-8"
PROBLEM_UTF8: Final = PROBLEM_CONTENT_TYPE + "; charset=utf-8"
KEY_PATTERN: Final = re.compile(r"[!-~]{1,64}")  # 1-64 visible ASCII characters (CONTRACT §3)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(eq=False)
class ReplicaState:
    """Everything one replica holds between requests; reached through `app[STATE_KEY]`, never a global."""

    config: GatewayConfig
    name: str
    clock: SimClock
    ledger: Ledger
    admission: Admission
    bank: Bank
    metrics: Metrics
    faults: Faults
    draining: bool = False
    in_flight: set[str] = field(default_factory=set)
    # Last known (business_date, usage) per (card, user), from this replica's own ledger steps: a guess for
    # the pre-check only; the ledger step always decides on the authoritative totals.
    usage_guess: dict[tuple[str, str], tuple[str, Usage]] = field(default_factory=dict)


STATE_KEY = web.AppKey("replica", ReplicaState)
CODE_KEY = web.ResponseKey("code", str)  # the problem code of a replayed decline, for the metrics label


def create_app(
    config: GatewayConfig,
    *,
    name: str = "r1",
    behind_router: bool = False,
    clock: SimClock | None = None,
    admin_token: str | None = None,
) -> web.Application:
    """A replica app. Behind the router only `replica_tps` is applied here (the router owns the global and
    per-user caps); standalone, the replica applies all three itself."""
    clock = clock or SimClock.from_config(config.clock)
    metrics = Metrics(name)
    limits = config.limits
    state = ReplicaState(
        config=config,
        name=name,
        clock=clock,
        ledger=Ledger(
            config.ledger.path,
            replica=name,
            clock=clock,
            decide=make_decider(config, name),
            synchronous=config.ledger.synchronous,
            busy_timeout_ms=config.ledger.busy_timeout_ms,
            on_commit=metrics.observe_commit,
        ),
        admission=Admission(
            replica_tps=limits.replica_tps,
            global_tps=None if behind_router else limits.global_tps,
            user_tps=None if behind_router else limits.user_tps,
            monotonic=time.monotonic,
            burst_ms=limits.burst_ms,
        ),
        bank=Bank(config.channels),
        metrics=metrics,
        faults=Faults(),
    )
    app = web.Application(
        middlewares=[problem_middleware],
        client_max_size=config.server.max_body_bytes,
    )
    app[STATE_KEY] = state
    metrics.in_flight.set_function(lambda: len(state.in_flight))
    for channel in config.channels:
        metrics.bank_in_flight.labels(channel.code).set_function(functools.partial(state.bank.in_flight, channel.code))
    app[FAULTS_KEY] = state.faults
    app[ADMIN_TOKEN_KEY] = admin_token if admin_token is not None else load_admin_token(config, os.environ)[0]
    app[CHANNEL_CODES_KEY] = frozenset(channel.code for channel in config.channels)
    app.cleanup_ctx.append(_ledger_lifetime)
    app.router.add_post("/v1/repayments", post_repayment)
    app.router.add_get("/v1/repayments/{repayment_id}", get_repayment, allow_head=False)
    app.router.add_get("/v1/users/{user_id}/limits", get_limits, allow_head=False)
    app.router.add_get("/v1/channels", get_channels, allow_head=False)
    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_get("/readyz", readyz, allow_head=False)
    app.router.add_get("/metrics", get_metrics, allow_head=False)
    app.router.add_post("/admin/drain", post_drain)
    add_admin_routes(app)
    return app


async def _ledger_lifetime(app: web.Application) -> AsyncIterator[None]:
    ledger = app[STATE_KEY].ledger
    await ledger.open()
    yield
    await ledger.close()


# --- middleware -------------------------------------------------------------------------------------


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Renders every error as problem+json, applies arrival faults, stamps X-Replica, counts the request."""
    state = request.app[STATE_KEY]
    started = time.perf_counter()
    code = ""
    try:
        if state.faults.active and request.path.startswith("/v1/"):
            await state.faults.before_api_request()
        response = await handler(request)
        code = response.get(CODE_KEY, "")
    except GatewayError as error:
        response, code = error.to_response(), error.code
    except web.HTTPException as exc:
        translated = _from_http_exception(request, exc)
        response, code = translated.to_response(), translated.code
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        response = GatewayError("the replica hit an internal error").to_response()
        code = GatewayError.code
    response.headers["X-Replica"] = state.name
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    state.metrics.observe_request(route, response.status, code, time.perf_counter() - started)
    return response


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> GatewayError:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(request.method, set(exc.allowed_methods))
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge(request.app[STATE_KEY].config.server.max_body_bytes)
    if isinstance(exc, web.HTTPNotFound):
        return NotFound(f"no such resource: {request.path[:200]!r}")
    error = GatewayError(exc.reason or "HTTP error")
    error.status = exc.status
    return error


# --- POST /v1/repayments ----------------------------------------------------------------------------


async def post_repayment(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    charge = await _parse_charge(request, state.config)
    earlier = state.ledger.lookup(charge.key)
    if earlier is not None:
        return _replay(earlier, charge)
    if charge.key in state.in_flight:
        raise IdempotencyInFlight(charge.key)
    state.in_flight.add(charge.key)
    try:
        return await _execute(request, state, charge)
    finally:
        state.in_flight.discard(charge.key)


async def _execute(request: web.Request, state: ReplicaState, charge: Charge) -> web.StreamResponse:
    refusal = state.admission.admit(charge.user_id)
    if refusal is not None:
        state.metrics.cap_rejections.labels(refusal.scope).inc()
        raise RateLimited(refusal.scope, refusal.retry_after_s, refusal.rate_per_s)
    if not _predict_decline(state, charge):
        if state.faults.active and state.faults.channel_down(charge.channel):
            state.metrics.cap_rejections.labels("channel").inc()
            raise ChannelBusy(f"channel {charge.channel} is down (injected fault)", retry_after_s=1.0)
        try:
            await state.bank.call(charge.channel)
        except ChannelBusy:
            state.metrics.cap_rejections.labels("channel").inc()
            raise
    try:
        outcome = await state.ledger.record(charge)
    except LedgerError as exc:
        log.warning("ledger step failed: %s", exc)
        raise ReplicaUnavailable("the ledger is unavailable; nothing was recorded, retry", retry_after_s=1) from None
    _remember_usage(state, charge, outcome)
    if outcome.replayed:
        return _replay(outcome.stored, charge)
    if outcome.stored.status != 201:
        state.metrics.cap_rejections.labels(json.loads(outcome.stored.body).get("scope", "single")).inc()
    elif state.faults.active and state.faults.lose_response():
        _drop_connection(request)
    return _stored_response(outcome.stored, replayed=False)


def _predict_decline(state: ReplicaState, charge: Charge) -> bool:
    """A cheap guess from the cap table and this replica's last view of the totals; may under-estimate."""
    channel = _channel(state.config, charge.channel)
    caps = Caps(channel.single_fen, channel.card_daily_fen, state.config.limits.user_daily_fen)
    if charge.amount_fen > caps.single_fen:
        return True
    guess = state.usage_guess.get((charge.card_id, charge.user_id))
    if guess is None:
        return False
    day, usage = guess
    today = business_date(state.clock.now())
    return day == today.isoformat() and check(charge.amount_fen, caps, usage, today) is not None


def _remember_usage(state: ReplicaState, charge: Charge, outcome: Outcome) -> None:
    if len(state.usage_guess) >= USAGE_CACHE_MAX:
        state.usage_guess.clear()
    state.usage_guess[(charge.card_id, charge.user_id)] = (outcome.business_date, outcome.usage)


def _drop_connection(request: web.Request) -> None:
    """The lose_response fault: the commit happened, the client only sees the connection reset."""
    transport = request.transport
    if transport is not None:
        transport.abort()


def _replay(stored: Stored, charge: Charge) -> web.StreamResponse:
    if stored.request_hash != charge.request_hash:
        raise IdempotencyKeyReused(charge.key)
    return _stored_response(stored, replayed=True)


def _stored_response(stored: Stored, *, replayed: bool) -> web.Response:
    content_type = JSON_UTF8 if stored.status < 400 else PROBLEM_UTF8
    response = web.Response(status=stored.status, body=stored.body.encode(), headers={"Content-Type": content_type})
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    if stored.status >= 400:
        response[CODE_KEY] = json.loads(stored.body).get("code", "")
    return response


# --- parsing and validation ---------------------------------------------------------------------------


async def _parse_charge(request: web.Request, config: GatewayConfig) -> Charge:
    limit = config.server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(limit)
    if request.content_type.lower() != "application/json":
        raise UnsupportedMediaType(request.headers.get("Content-Type", "")[:100])
    key = _idempotency_key(request.headers.get("Idempotency-Key"))
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(limit) from None
    user_id, card_id, channel, amount = _validate(_decode(raw), config)
    digest = hashlib.sha256(f"{user_id}\n{card_id}\n{channel}\n{amount}".encode()).hexdigest()
    return Charge(key, digest, user_id, card_id, channel, amount)


def _idempotency_key(value: str | None) -> str:
    if value is None or value == "":
        raise MissingIdempotencyKey
    if KEY_PATTERN.fullmatch(value) is None:
        raise ValidationFailed(
            [("Idempotency-Key", f"'Idempotency-Key' must be 1-64 visible ASCII characters (got {_show(value)})")]
        )
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# One decoder for the process: json.loads(..., parse_constant=...) would build a new one per call.
_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)


def _decode(raw: bytes) -> Any:
    try:
        return _DECODER.decode(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise InvalidJson(f"body is not valid JSON: {str(exc)[:200]}") from None


def _validate(data: Any, config: GatewayConfig) -> tuple[str, str, str, int]:
    if not isinstance(data, dict):
        raise ValidationFailed([("body", f"body must be a JSON object (got {type(data).__name__})")])
    errors: list[tuple[str, str]] = [(name, f"unknown field {_show(name)}") for name in sorted(set(data) - FIELDS)]
    user_id = _text_field(data, "user_id", errors)
    card_id = _text_field(data, "card_id", errors)
    channel = _text_field(data, "channel", errors)
    if channel is not None and config.channel(channel) is None:
        known = ", ".join(c.code for c in config.channels)
        errors.append(("channel", f"'channel' must be one of {known} (got {_show(channel)})"))
    amount = data.get("amount_fen")
    if "amount_fen" not in data:
        errors.append(("amount_fen", "'amount_fen' is required"))
    elif isinstance(amount, bool) or not isinstance(amount, int):
        errors.append(("amount_fen", f"'amount_fen' must be an integer number of fen (got {_show(amount)})"))
    elif amount <= 0:
        errors.append(("amount_fen", f"'amount_fen' must be > 0 (got {_show(amount)})"))
    elif amount > MAX_AMOUNT_FEN:
        errors.append(("amount_fen", f"'amount_fen' must be <= {MAX_AMOUNT_FEN} (got {_show(amount)})"))
    if errors:
        raise ValidationFailed(errors)
    assert user_id is not None and card_id is not None and channel is not None and isinstance(amount, int)
    return user_id, card_id, channel, amount


def _text_field(data: dict[str, Any], name: str, errors: list[tuple[str, str]]) -> str | None:
    if name not in data:
        errors.append((name, f"'{name}' is required"))
        return None
    value = data[name]
    problem = _id_problem(value)
    if problem:
        errors.append((name, f"'{name}' {problem} (got {_show(value)})"))
        return None
    return str(value)


def _id_problem(value: object) -> str:
    """Empty when `value` is a usable id: 1-64 printable characters (no controls, no lone surrogates)."""
    if not isinstance(value, str):
        return "must be a string"
    if not 1 <= len(value) <= MAX_ID_CHARS:
        return f"must be 1-{MAX_ID_CHARS} characters long"
    if not value.isprintable():
        return "must not contain control characters"
    return ""


def _show(value: object) -> str:
    text = repr(value) if not isinstance(value, int) or isinstance(value, bool) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _channel(config: GatewayConfig, code: str) -> ChannelConfig:
    channel = config.channel(code)
    if channel is None:
        raise ValidationFailed([("channel", f"unknown channel {_show(code)}")])
    return channel


# --- business decisions (run inside the ledger transaction) -------------------------------------------


def make_decider(config: GatewayConfig, replica: str) -> Decide:
    """The rule applied inside the ledger transaction, on totals no other writer can change meanwhile."""

    def decide(charge: Charge, usage: Usage, moment: datetime) -> Decision:
        channel = _channel(config, charge.channel)
        caps = Caps(channel.single_fen, channel.card_daily_fen, config.limits.user_daily_fen)
        today = business_date(moment)
        decline = check(charge.amount_fen, caps, usage, today)
        if decline is not None:
            error = _decline_error(decline, charge, moment)
            return Decision(error.status, json.dumps(error.body()), None)
        repayment_id = new_repayment_id()
        left = remaining(caps, Usage(usage.card_fen + charge.amount_fen, usage.user_fen + charge.amount_fen))
        body = {
            "repayment_id": repayment_id,
            "status": "succeeded",
            "user_id": charge.user_id,
            "card_id": charge.card_id,
            "channel": charge.channel,
            "amount_fen": charge.amount_fen,
            "business_date": today.isoformat(),
            "replica": replica,
            "remaining": {"card_fen": left.card_fen, "user_fen": left.user_fen},
        }
        return Decision(201, json.dumps(body), repayment_id)

    return decide


def new_repayment_id() -> str:
    """`rp_` + 32 hex digits, time-ordered like a UUIDv7 (microseconds, then 72 random bits): new ids land at the
    end of the primary-key B-tree instead of on a random page, one page less to write per commit."""
    return f"rp_{time.time_ns() // 1000:014x}{secrets.token_hex(9)}"


def _decline_error(decline: Decline, charge: Charge, moment: datetime) -> LimitExceeded:
    plan = [part.as_json() for part in decline.plan]
    advice = "pay it as the suggested plan" if plan else "no plan within the next month fits every cap"
    if decline.scope == "single":
        return SingleLimitExceeded(
            f"amount_fen {charge.amount_fen} is over channel {charge.channel}'s per-transaction limit of "
            f"{decline.limit_fen} fen; {advice}",
            extra={"limit_fen": decline.limit_fen, "suggested_plan": plan},
        )
    subject = f"card {charge.card_id!r}" if decline.scope == "card" else f"user {charge.user_id!r}"
    return DailyLimitExceeded(
        f"{subject} may repay {decline.limit_fen} fen a day and has {decline.remaining_fen} fen left today, "
        f"less than amount_fen {charge.amount_fen}; {advice}",
        extra={
            "scope": decline.scope,
            "limit_fen": decline.limit_fen,
            "remaining_fen": decline.remaining_fen,
            "resets_at": resets_at(moment).isoformat(),
            "suggested_plan": plan,
        },
    )


# --- reads and operations -----------------------------------------------------------------------------


async def get_repayment(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    repayment_id = request.match_info["repayment_id"]
    row = state.ledger.repayment(repayment_id) if not _id_problem(repayment_id) else None
    if row is None:
        raise NotFound(f"no repayment {_show(repayment_id)}")
    body = {
        "repayment_id": row["repayment_id"],
        "status": "succeeded",
        "idempotency_key": row["idempotency_key"],
        "user_id": row["user_id"],
        "card_id": row["card_id"],
        "channel": row["channel"],
        "amount_fen": row["amount_fen"],
        "business_date": row["business_date"],
        "replica": row["replica"],
        "created_at": row["created_at"],
    }
    return web.json_response(body)


async def get_limits(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    user_id = request.match_info["user_id"]
    problem = _id_problem(user_id)
    if problem:
        raise ValidationFailed([("user_id", f"'user_id' {problem} (got {_show(user_id)})")])
    now = state.clock.now()
    today = business_date(now).isoformat()
    try:
        user_total, cards = state.ledger.user_day(user_id, today)
    except LedgerError:
        raise ReplicaUnavailable("the ledger is unavailable") from None
    user_limit = state.config.limits.user_daily_fen
    card_rows = []
    for card_id, code, used in cards:
        channel = state.config.channel(code)
        if channel is not None:
            limit = channel.card_daily_fen
            card_rows.append(
                {
                    "card_id": card_id,
                    "channel": code,
                    "limit_fen": limit,
                    "used_fen": used,
                    "remaining_fen": max(0, limit - used),
                }
            )
    body = {
        "user_id": user_id,
        "business_date": today,
        "resets_at": resets_at(now).isoformat(),
        "user": {"limit_fen": user_limit, "used_fen": user_total, "remaining_fen": max(0, user_limit - user_total)},
        "cards": card_rows,
    }
    return web.json_response(body)


async def get_channels(request: web.Request) -> web.Response:
    """The bank channels and their limits in force now: what a load driver draws its users' cards on."""
    channels = request.app[STATE_KEY].config.channels
    body = {
        "channels": [
            {
                "code": channel.code,
                "single_fen": channel.single_fen,
                "card_daily_fen": channel.card_daily_fen,
                "tps": getattr(channel, "tps", 0),  # the per-channel bank quota, where the config has one
            }
            for channel in channels
        ]
    }
    return web.json_response(body)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive", "replica": request.app[STATE_KEY].name})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if state.draining:
        raise ReplicaUnavailable("draining: finishing in-flight requests before shutdown")
    if not state.ledger.healthy():
        raise ReplicaUnavailable("the ledger is not reachable")
    return web.json_response({"status": "ready", "replica": state.name})


async def get_metrics(request: web.Request) -> web.Response:
    metrics = request.app[STATE_KEY].metrics
    return web.Response(body=metrics.render(), headers={"Content-Type": metrics.content_type})


async def post_drain(request: web.Request) -> web.Response:
    require_admin(request, request.app[ADMIN_TOKEN_KEY])
    state = request.app[STATE_KEY]
    state.draining = True
    return web.json_response({"replica": state.name, "draining": True})
