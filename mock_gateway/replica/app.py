"""One gateway replica: `create_app(config)` wires the routes of docs/gateway.md to the caps, bank and ledger.

Admission order for POST /v1/repayments (docs/gateway.md explains why this order):

    parse + validate (400/413/415)      nothing stored, a retry runs afresh
    idempotency lookup                  stored: replay it (same body) or 422 (other body)
    in-flight check                     409 + Retry-After while the same key is being processed here
    per-second caps                     429, nothing stored
    cross-replica claim (active-active) stored elsewhere meanwhile: replay; claimed by another replica: 409
    quick pre-check of the daily caps   an obvious decline skips the bank
    channel outage fault, bank call     503 CHANNEL_BUSY, nothing stored (sync channels only)
    ledger step                         atomic re-check + record + commit; only then the answer

On an asynchronous channel the ledger step records the payment as `processing` (its amount reserved against the
day's caps) and answers 202; the bank is called later by `mock_gateway.replica.settlement`, which writes the
final state, releases a refused payment's reservation and sends the callback.

Every response carries `X-Replica`; every error is problem+json, including unknown paths and methods
(`mock_gateway.problems`, shared with the router). Input rules live in `mock_gateway.validation`, business rules
in `mock_gateway.rules`, the caps in `mock_gateway.limits`: this module is the HTTP wiring between them.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, TypeVar

from aiohttp import web

from mock_gateway.admin import ADMIN_TOKEN_KEY, load_admin_token, require_admin
from mock_gateway.clock import SimClock, business_date, resets_at
from mock_gateway.config import GatewayConfig, Rates
from mock_gateway.errors import (
    PROBLEM_CONTENT_TYPE,
    ChannelBusy,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    LedgerError,
    NotFound,
    RateLimited,
    ReplicaUnavailable,
    ValidationFailed,
)
from mock_gateway.limits import Admission, ScheduledAdmission, admission_for
from mock_gateway.problems import CODE_KEY, problem_middleware
from mock_gateway.quotas import Usage
from mock_gateway.replica.bank import Bank
from mock_gateway.replica.faults import CHANNEL_CODES_KEY, FAULTS_KEY, MAX_BODY_KEY, Faults, add_admin_routes
from mock_gateway.replica.ledger import Ledger
from mock_gateway.replica.ledger.schema import ACCEPTED, Outcome, Stored, settlement_document
from mock_gateway.replica.metrics import Metrics
from mock_gateway.replica.settlement import Settler
from mock_gateway.rules import caps_for, make_decider, obvious_decline, poll_after
from mock_gateway.signing import RequestSigning
from mock_gateway.validation import Charge, id_problem, read_charge, show

log = logging.getLogger(__name__)

USAGE_CACHE_MAX: Final = 10_000  # ~400 B an entry: the pre-check's guess costs at most ~4 MB of a replica's RSS
JSON_UTF8: Final = "application/json; charset=utf-8"
PROBLEM_UTF8: Final = PROBLEM_CONTENT_TYPE + "; charset=utf-8"
_T = TypeVar("_T")


@dataclass(eq=False)
class ReplicaState:
    """Everything one replica holds between requests; reached through `app[STATE_KEY]`, never a global."""

    config: GatewayConfig
    name: str
    clock: SimClock
    ledger: Ledger
    admission: Admission | ScheduledAdmission[Rates]
    bank: Bank
    metrics: Metrics
    faults: Faults
    settler: Settler
    draining: bool = False
    in_flight: set[str] = field(default_factory=set)
    # Last known (business_date, usage) per (card, user), from this replica's own ledger steps: a guess for
    # the pre-check only; the ledger step always decides on the authoritative totals.
    usage_guess: dict[tuple[str, str], tuple[str, Usage]] = field(default_factory=dict)
    releases: set[asyncio.Future[None]] = field(default_factory=set)  # claim releases still being committed

    @functools.cached_property
    def channel_codes(self) -> tuple[str, ...]:
        return tuple(channel.code for channel in self.config.channels)

    @functools.cached_property
    def async_channels(self) -> frozenset[str]:
        return self.config.async_channels()

    @functools.cached_property
    def retry_after(self) -> dict[str, str]:
        """The Retry-After of a `processing` answer per async channel: its poll_after_ms in whole seconds."""
        return {
            channel.code: str(max(1, -(-poll_after(channel) // 1000)))
            for channel in self.config.channels
            if channel.settlement == "async"
        }


STATE_KEY = web.AppKey("replica", ReplicaState)
SIGNING_KEY: web.AppKey[RequestSigning | None] = web.AppKey("signing")


def create_app(
    config: GatewayConfig,
    *,
    name: str = "r1",
    behind_router: bool = False,
    clock: SimClock | None = None,
    admin_token: str | None = None,
    bank_share: float = 1.0,
) -> web.Application:
    """A replica app. Behind the router only `replica_tps` is applied here (the router owns the global and
    per-user caps); standalone, the replica applies all three itself."""
    clock = clock or SimClock.from_config(config.clock)
    metrics = Metrics(name)
    ledger = Ledger(
        config.ledger.path,
        replica=name,
        clock=clock,
        decide=make_decider(config, name),
        synchronous=config.ledger.synchronous,
        busy_timeout_ms=config.ledger.busy_timeout_ms,
        on_commit=metrics.observe_commit,
        claiming=config.router.mode == "active-active",
    )
    bank = Bank(config.channels, quota_share=bank_share)
    faults = Faults()
    state = ReplicaState(
        config=config,
        name=name,
        clock=clock,
        ledger=ledger,
        admission=admission_for(
            lambda: config.rates_at(clock.now()),  # the dynamic limits' rates, when they schedule any
            scheduled=config.schedules_rates(),
            scopes=("replica",) if behind_router else ("replica", "global", "user"),
            monotonic=time.monotonic,
        ),
        bank=bank,
        metrics=metrics,
        faults=faults,
        settler=Settler(config, ledger=ledger, bank=bank, faults=faults, metrics=metrics),
    )
    app = web.Application(
        middlewares=[
            problem_middleware(
                name,
                max_body_bytes=config.server.max_body_bytes,
                before=functools.partial(_arrival_faults, state),
                observe=functools.partial(_observe, state),
            )
        ],
        client_max_size=config.server.max_body_bytes,
    )
    app[STATE_KEY] = state
    metrics.in_flight.set_function(lambda: len(state.in_flight))
    for channel in config.channels:
        metrics.bank_in_flight.labels(channel.code).set_function(functools.partial(state.bank.in_flight, channel.code))
    app[FAULTS_KEY] = state.faults
    app[ADMIN_TOKEN_KEY] = admin_token if admin_token is not None else load_admin_token(config, os.environ)[0]
    app[CHANNEL_CODES_KEY] = frozenset(channel.code for channel in config.channels)
    app[MAX_BODY_KEY] = config.server.max_body_bytes
    app.cleanup_ctx.append(_ledger_lifetime)
    app.cleanup_ctx.append(_settler_lifetime)  # started after the ledger opens, stopped before it closes
    app[SIGNING_KEY] = RequestSigning.from_config(config, os.environ)
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


async def _settler_lifetime(app: web.Application) -> AsyncIterator[None]:
    settler = app[STATE_KEY].settler
    await settler.start()
    yield
    await settler.stop()


# --- middleware hooks ---------------------------------------------------------------------------------


async def _arrival_faults(state: ReplicaState, request: web.Request) -> None:
    """Latency and error faults act on API requests only: health checks and admin calls stay truthful."""
    if state.faults.active and request.path.startswith("/v1/"):
        await state.faults.before_api_request()


def _observe(state: ReplicaState, request: web.Request, response: web.StreamResponse, code: str, took: float) -> None:
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    state.metrics.observe_request(route, response.status, code, took)


# --- POST /v1/repayments ----------------------------------------------------------------------------


async def post_repayment(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    charge, raw = await read_charge(
        request, state.channel_codes, state.config.server.max_body_bytes, state.async_channels
    )
    signing = request.app[SIGNING_KEY]
    if signing is not None:
        signing.check(request.method, request.path, request.headers, raw)
    try:
        earlier = await state.ledger.lookup(charge.key)
    except LedgerError as exc:
        log.warning("idempotency lookup failed: %s", exc)
        raise ReplicaUnavailable("the ledger cannot be read; nothing was recorded, retry", retry_after_s=1) from None
    if earlier is not None:
        return _replay(state, earlier, charge)
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
    claimed = False
    if state.ledger.claiming:
        claim = await _ledger_call(state.ledger.claim(charge))
        if claim.stored is not None:
            return _replay(state, claim.stored, charge)
        if claim.held_by is not None:
            raise IdempotencyInFlight(charge.key)
        claimed = True
    try:
        if charge.channel in state.async_channels:
            if state.faults.active:
                await _channel_faults(state, charge)  # no bank call to wait on: the channel's faults act here
        elif not _predict_decline(state, charge):
            await _call_bank(state, charge)
        outcome = await _ledger_call(state.ledger.record(charge))
        claimed = False  # the ledger step dropped the claim in its own transaction
    finally:
        if claimed:
            _release_later(state, charge)
    _remember_usage(state, charge, outcome)
    if outcome.replayed:
        return _replay(state, outcome.stored, charge)
    stored = outcome.stored
    if stored.status >= 400:
        state.metrics.cap_rejections.labels(json.loads(stored.body).get("scope", "single")).inc()
    else:
        if stored.status == ACCEPTED and stored.repayment_id is not None:
            state.settler.accepted(stored.repayment_id, charge.channel, charge.notify_url)
        if state.faults.active and state.faults.lose_response(charge.channel):
            _drop_connection(request)
    return _stored_response(state, stored, charge.channel, replayed=False)


async def _channel_faults(state: ReplicaState, charge: Charge) -> None:
    """The faults injected on the charge's channel: an outage (503 CHANNEL_BUSY), its latency and errors."""
    if state.faults.channel_down(charge.channel):
        state.metrics.cap_rejections.labels("channel").inc()
        raise ChannelBusy(f"channel {charge.channel} is down (injected fault)", retry_after_s=1.0)
    await state.faults.before_bank_call(charge.channel)


async def _call_bank(state: ReplicaState, charge: Charge) -> None:
    if state.faults.active:
        await _channel_faults(state, charge)
    try:
        await state.bank.call(charge.channel)
    except ChannelBusy:
        state.metrics.cap_rejections.labels("channel").inc()
        raise


async def _ledger_call(step: Awaitable[_T]) -> _T:
    """A ledger write whose failure is this replica's 503: nothing was recorded, the client may retry."""
    try:
        return await step
    except LedgerError as exc:
        log.warning("ledger step failed: %s", exc)
        raise ReplicaUnavailable("the ledger is unavailable; nothing was recorded, retry", retry_after_s=1) from None


def _release_later(state: ReplicaState, charge: Charge) -> None:
    """Drop the claim of a request that ended before its ledger step (a busy channel, a fault, a cancelled
    request), without holding the answer for another commit. If the release fails, the claim lapses with
    this process or after the lease."""
    task = asyncio.ensure_future(state.ledger.release(charge))
    state.releases.add(task)
    task.add_done_callback(_released(state))


def _released(state: ReplicaState) -> Callable[[asyncio.Future[None]], None]:
    def done(task: asyncio.Future[None]) -> None:
        state.releases.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("releasing a claim failed: %s", task.exception())

    return done


def _predict_decline(state: ReplicaState, charge: Charge) -> bool:
    """A cheap guess from the cap table and this replica's last view of the totals; may under-estimate."""
    now = state.clock.now()
    caps = caps_for(state.config, charge.channel, now)
    guess = state.usage_guess.get((charge.card_id, charge.user_id))
    return obvious_decline(charge, caps, guess, business_date(now))


def _remember_usage(state: ReplicaState, charge: Charge, outcome: Outcome) -> None:
    if len(state.usage_guess) >= USAGE_CACHE_MAX:
        state.usage_guess.clear()
    state.usage_guess[(charge.card_id, charge.user_id)] = (outcome.business_date, outcome.usage)


def _drop_connection(request: web.Request) -> None:
    """The lose_response fault: the commit happened, the client only sees the connection reset."""
    transport = request.transport
    if transport is not None:
        transport.abort()


def _replay(state: ReplicaState, stored: Stored, charge: Charge) -> web.StreamResponse:
    """The key's stored answer; for an async payment that is its current state (202 while processing, then the
    final document, which the settlement's final write stored against the key)."""
    if stored.request_hash != charge.request_hash:
        raise IdempotencyKeyReused(charge.key)
    return _stored_response(state, stored, charge.channel, replayed=True)


def _stored_response(state: ReplicaState, stored: Stored, channel: str, *, replayed: bool) -> web.Response:
    content_type = JSON_UTF8 if stored.status < 400 else PROBLEM_UTF8
    response = web.Response(status=stored.status, body=stored.body.encode(), headers={"Content-Type": content_type})
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    if stored.status == ACCEPTED:
        response.headers["Location"] = f"/v1/repayments/{stored.repayment_id}"
        response.headers["Retry-After"] = state.retry_after.get(channel, "1")
    if stored.status >= 400:
        response[CODE_KEY] = json.loads(stored.body).get("code", "")
    return response


# --- reads and operations -----------------------------------------------------------------------------


async def get_repayment(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    repayment_id = request.match_info["repayment_id"]
    try:
        row = await state.ledger.repayment(repayment_id) if not id_problem(repayment_id) else None
    except LedgerError as exc:
        log.warning("ledger read failed: %s", exc)
        raise ReplicaUnavailable("the ledger is unavailable; retry", retry_after_s=1) from None
    if row is None:
        raise NotFound(f"no repayment {show(repayment_id)}")
    if row["owner"] is not None:  # an asynchronous payment
        return _settlement_response(state, row)
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


def _settlement_response(state: ReplicaState, row: dict[str, object]) -> web.Response:
    """An async payment's state; while it is processing, when to ask again (body and Retry-After)."""
    document = settlement_document(row)
    channel = str(row["channel"])
    if document["status"] != "processing":
        return web.json_response(document)
    config = state.config.channel(channel)
    document["poll_after_ms"] = poll_after(config) if config is not None else 1000
    return web.json_response(document, headers={"Retry-After": state.retry_after.get(channel, "1")})


async def get_limits(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    user_id = request.match_info["user_id"]
    problem = id_problem(user_id)
    if problem:
        raise ValidationFailed([("user_id", f"'user_id' {problem} (got {show(user_id)})")])
    now = state.clock.now()
    today = business_date(now).isoformat()
    try:
        user_total, cards = await state.ledger.user_day(user_id, today)
    except LedgerError as exc:
        log.warning("ledger read failed: %s", exc)
        raise ReplicaUnavailable("the ledger is unavailable; retry", retry_after_s=1) from None
    user_limit = state.config.user_daily_fen(now)  # the caps in force now, dynamic limits included
    card_rows = []
    for card_id, code, used in cards:
        channel = state.config.channel(code)
        if channel is not None:
            limit = state.config.money_caps(channel, now).card_daily_fen
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
    state = request.app[STATE_KEY]
    now = state.clock.now()
    rows = []
    for channel in state.config.channels:
        caps = state.config.money_caps(channel, now)  # dynamic limits (`limits.schedule`) included
        rows.append(
            {
                "code": channel.code,
                "single_fen": caps.single_fen,
                "card_daily_fen": caps.card_daily_fen,
                "tps": channel.tps,  # the bank's per-second quota, 0 for none
                "settlement": channel.settlement,  # "async": answered 202, settled later
            }
        )
    return web.json_response({"channels": rows})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive", "replica": request.app[STATE_KEY].name})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if state.draining:
        raise ReplicaUnavailable("draining: finishing in-flight requests before shutdown")
    problem = await state.ledger.readiness()
    if problem:
        raise ReplicaUnavailable(problem)
    return web.json_response({"status": "ready", "replica": state.name})


async def get_metrics(request: web.Request) -> web.Response:
    metrics = request.app[STATE_KEY].metrics
    return web.Response(body=metrics.render(), headers={"Content-Type": metrics.content_type})


async def post_drain(request: web.Request) -> web.Response:
    require_admin(request, request.app[ADMIN_TOKEN_KEY])
    state = request.app[STATE_KEY]
    state.draining = True
    return web.json_response({"replica": state.name, "draining": True})
