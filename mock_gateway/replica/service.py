"""What a replica tells about itself: the caps in force (limits, channels), health, readiness, metrics, drain.

Everything here reads the gateway clock and the config's caps through `GatewayConfig`, so a dynamic limit in
force now shows in `/v1/users/{id}/limits` and `/v1/channels` at the same instant it starts deciding payments.
"""

from __future__ import annotations

from aiohttp import web

from mock_gateway.admin import ADMIN_TOKEN_KEY, require_admin
from mock_gateway.clock import business_date, resets_at
from mock_gateway.errors import ReplicaUnavailable, ValidationFailed
from mock_gateway.replica.state import STATE_KEY, from_ledger
from mock_gateway.validation import id_problem, show


async def get_limits(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    user_id = request.match_info["user_id"]
    problem = id_problem(user_id)
    if problem:
        raise ValidationFailed([("user_id", f"'user_id' {problem} (got {show(user_id)})")])
    now = state.clock.now()
    today = business_date(now).isoformat()
    user_total, cards = await from_ledger(
        state.ledger.user_day(user_id, today), "ledger read", "the ledger is unavailable; retry"
    )
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
