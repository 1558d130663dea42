"""One gateway replica: `create_app(config)` builds its state and wires the routes of docs/gateway.md to it.

This module is the assembly only: what a replica holds lives in `state`, the payment resource (the admission
order of POST /v1/repayments, replays, GET by id) in `repayments`, what a replica tells about itself (limits,
channels, health, metrics, drain) in `service`, injected faults in `faults`, asynchronous settlement in
`settlement`. Input rules live in `mock_gateway.validation`, business rules in `mock_gateway.rules`, the caps
in `mock_gateway.limits`. Every response carries `X-Replica`; every error is problem+json, including unknown
paths and methods (`mock_gateway.problems`, shared with the router).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import AsyncIterator

from aiohttp import web

from mock_gateway.admin import ADMIN_TOKEN_KEY, load_admin_token
from mock_gateway.clock import SimClock
from mock_gateway.config import GatewayConfig
from mock_gateway.limits import admission_for
from mock_gateway.problems import problem_middleware
from mock_gateway.replica.bank import Bank
from mock_gateway.replica.faults import CHANNEL_CODES_KEY, FAULTS_KEY, MAX_BODY_KEY, Faults, add_admin_routes
from mock_gateway.replica.ledger import Ledger
from mock_gateway.replica.metrics import Metrics
from mock_gateway.replica.repayments import get_repayment, post_repayment
from mock_gateway.replica.service import get_channels, get_limits, get_metrics, healthz, post_drain, readyz
from mock_gateway.replica.settlement import Settler
from mock_gateway.replica.state import SIGNING_KEY, STATE_KEY, ReplicaState
from mock_gateway.rules import make_decider
from mock_gateway.signing import RequestSigning


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
