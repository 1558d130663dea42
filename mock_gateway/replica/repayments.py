"""The payment resource of a replica: POST /v1/repayments and GET /v1/repayments/{id}.

Admission order for POST (docs/gateway.md explains why this order):

    parse + validate (400/413/415)      nothing stored, a retry runs afresh
    idempotency lookup                  stored: replay it (same body) or 422 (other body)
    in-flight check                     409 + Retry-After while the same key is being processed here
    per-second caps                     429, nothing stored
    cross-replica claim (active-active) stored elsewhere meanwhile: replay; claimed by another replica: 409
    quick pre-check of the daily caps   an obvious decline skips the bank
    channel outage fault, bank call     503 CHANNEL_BUSY, nothing stored (sync channels only)
    ledger step                         atomic re-check + record + commit; only then the answer

On an asynchronous channel the ledger step records the payment as `processing` (its amount reserved against the
day's caps) and answers 202; `mock_gateway.replica.settlement` calls the bank later and writes the final state.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Final

from aiohttp import web

from mock_gateway.clock import business_date
from mock_gateway.errors import (
    PROBLEM_CONTENT_TYPE,
    ChannelBusy,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    NotFound,
    RateLimited,
)
from mock_gateway.problems import CODE_KEY
from mock_gateway.replica.ledger.schema import ACCEPTED, Outcome, Stored, settlement_document
from mock_gateway.replica.state import SIGNING_KEY, STATE_KEY, ReplicaState, from_ledger
from mock_gateway.rules import caps_for, obvious_decline, poll_after
from mock_gateway.validation import Charge, id_problem, read_charge, show

log = logging.getLogger(__name__)

USAGE_CACHE_MAX: Final = 10_000  # ~400 B an entry: the pre-check's guess costs at most ~4 MB of a replica's RSS
JSON_UTF8: Final = "application/json; charset=utf-8"
PROBLEM_UTF8: Final = PROBLEM_CONTENT_TYPE + "; charset=utf-8"
LEDGER_STEP_FAILED: Final = "the ledger is unavailable; nothing was recorded, retry"


async def post_repayment(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    charge, raw = await read_charge(
        request, state.channel_codes, state.config.server.max_body_bytes, state.async_channels
    )
    signing = request.app[SIGNING_KEY]
    if signing is not None:
        signing.check(request.method, request.path, request.headers, raw)
    earlier = await from_ledger(
        state.ledger.lookup(charge.key),
        "idempotency lookup",
        "the ledger cannot be read; nothing was recorded, retry",
    )
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
    settles_later = charge.channel in state.async_channels
    claimed = False
    if state.ledger.claiming:
        claim = await from_ledger(state.ledger.claim(charge), "ledger step", LEDGER_STEP_FAILED)
        if claim.stored is not None:
            return _replay(state, claim.stored, charge)
        if claim.held_by is not None:
            raise IdempotencyInFlight(charge.key)
        claimed = True
    try:
        if settles_later:
            if state.faults.active:
                await _channel_faults(state, charge)  # no bank call to wait on: the channel's faults act here
        elif not _predict_decline(state, charge):
            await _call_bank(state, charge)
        outcome = await from_ledger(state.ledger.record(charge), "ledger step", LEDGER_STEP_FAILED)
        claimed = False  # the ledger step dropped the claim in its own transaction
    finally:
        if claimed:
            _release_later(state, charge)
    if not settles_later:  # the guess feeds the pre-check of the sync channels' bank call, nothing else
        _remember_usage(state, charge, outcome)
    if outcome.replayed:
        return _replay(state, outcome.stored, charge)
    stored = outcome.stored
    if stored.status >= 400:
        state.metrics.cap_rejections.labels(json.loads(stored.body).get("scope", "single")).inc()
    else:
        if stored.status == ACCEPTED and stored.repayment_id is not None:
            state.settler.accepted(charge.channel)
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
    headers = {"Content-Type": JSON_UTF8 if stored.status < 400 else PROBLEM_UTF8}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    if stored.status == ACCEPTED:
        headers["Location"] = f"/v1/repayments/{stored.repayment_id}"
        headers["Retry-After"] = state.retry_after.get(channel, "1")
    response = web.Response(status=stored.status, body=stored.body.encode(), headers=headers)
    if stored.status >= 400:
        response[CODE_KEY] = json.loads(stored.body).get("code", "")
    return response


# --- GET /v1/repayments/{id} ---------------------------------------------------------------------------


async def get_repayment(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    repayment_id = request.match_info["repayment_id"]
    row = None
    if not id_problem(repayment_id):
        row = await from_ledger(state.ledger.repayment(repayment_id), "ledger read", "the ledger is unavailable; retry")
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
