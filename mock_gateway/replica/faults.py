"""Injected faults (docs/internals.md §1): latency, error answers, a channel outage, and lost responses.

Each fault applies to a random `ratio` of requests and expires by itself after `duration_s`, so a chaos run
that dies half-way never leaves a replica broken; with none active the request path pays one attribute read.

Where each kind acts: `latency` and `errors` on arrival (`before_api_request`), before anything is recorded, so
a retry runs afresh; `channel_outage` just before the bank call (503 CHANNEL_BUSY); `lose_response` after the
commit (the repayment exists, the client never hears of it — the case idempotent retries exist for). On async
channels: `settlement_stall` (the bank settles nothing for `duration_s`, on `channel` or every channel),
`callback_loss` and `callback_duplicate` (a `ratio` of first deliveries lost, or deliveries sent twice).

A fault with a `channel` touches that channel's payments only, as a failing bank would. The channel is known
only once the body is read, so a channel's latency and errors act just before its bank call (`before_bank_call`:
still before anything is recorded) and its lost responses only on that channel's commits.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from errortext.validation import describe_each
from mock_gateway.admin import ADMIN_TOKEN_KEY, require_admin
from mock_gateway.errors import ReplicaUnavailable, ValidationFailed
from mock_gateway.validation import decode_json, read_body

FaultKind = Literal[
    "latency",
    "errors",
    "channel_outage",
    "lose_response",
    "settlement_stall",
    "callback_loss",
    "callback_duplicate",
]


class FaultSpec(BaseModel):
    """The body of `POST /admin/faults`; `target` is the router's business and is ignored here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: FaultKind
    ratio: float = Field(default=1.0, ge=0, le=1)
    duration_s: float = Field(gt=0, le=86_400)
    latency_ms: int = Field(default=0, ge=0, le=60_000)
    status: int = Field(default=503, ge=500, le=599)
    channel: str | None = None
    target: str | None = None

    @model_validator(mode="after")
    def _kind_needs(self) -> FaultSpec:
        if self.kind == "channel_outage" and not self.channel:
            raise ValueError("a channel_outage needs 'channel'")
        if self.kind == "latency" and self.latency_ms <= 0:
            raise ValueError("a latency fault needs 'latency_ms' > 0")
        return self


@dataclass(frozen=True, slots=True)
class ActiveFault:
    id: int
    spec: FaultSpec
    started_unix: float
    expires_mono: float

    def as_json(self, now_mono: float) -> dict[str, Any]:
        data = self.spec.model_dump(exclude={"target"}, exclude_none=True)
        return {"id": self.id, **data, "started_unix": self.started_unix, "remaining_s": self.expires_mono - now_mono}


class Faults:
    """The replica's active faults; every query drops the expired ones first."""

    def __init__(
        self,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._monotonic = monotonic
        self._rng = rng or random.Random()
        self._ids = itertools.count(1)
        self._faults: list[ActiveFault] = []

    @property
    def active(self) -> bool:
        return bool(self._faults)

    def add(self, spec: FaultSpec) -> ActiveFault:
        fault = ActiveFault(next(self._ids), spec, time.time(), self._monotonic() + spec.duration_s)
        self._faults.append(fault)
        return fault

    def clear(self) -> int:
        count = len(self._current())
        self._faults = []
        return count

    def listing(self) -> list[dict[str, Any]]:
        now = self._monotonic()
        return [fault.as_json(now) for fault in self._current()]

    def added_latency_s(self, channel: str | None) -> float:
        """The latency of the faults on `channel` (None: of the faults on every channel)."""
        return sum(f.spec.latency_ms for f in self._hits("latency", channel)) / 1000.0

    def error_status(self, channel: str | None) -> int | None:
        hits = self._hits("errors", channel)
        return hits[0].spec.status if hits else None

    def channel_down(self, channel: str) -> bool:
        return bool(self._hits("channel_outage", channel))

    def lose_response(self, channel: str) -> bool:
        """Whether to drop the answer of a commit on `channel`: a fault on every channel or on this one."""
        return bool(self._hits("lose_response", None) or self._hits("lose_response", channel))

    def stall_left_s(self, channel: str) -> float:
        """How long the bank still settles nothing on `channel` (0: it settles)."""
        now = self._monotonic()
        stalls = [
            f.expires_mono - now
            for f in self._current()
            if f.spec.kind == "settlement_stall" and f.spec.channel in (None, channel)
        ]
        return max(stalls, default=0.0)

    def drop_callback(self, channel: str) -> bool:
        """Whether to drop a first callback delivery of a payment on `channel` (a fault on every channel or it)."""
        return bool(self._hits("callback_loss", None) or self._hits("callback_loss", channel))

    def duplicate_callback(self, channel: str) -> bool:
        """Whether to deliver a callback of a payment on `channel` twice."""
        return bool(self._hits("callback_duplicate", None) or self._hits("callback_duplicate", channel))

    async def before_api_request(self) -> None:
        """The latency and error faults on every channel, applied to API paths only (health checks and admin
        calls stay truthful) and before anything is recorded, so an injected error leaves nothing behind."""
        await self._delay_or_fail(None, "this replica answers errors")

    async def before_bank_call(self, channel: str) -> None:
        """The latency and error faults on `channel`, before its bank call: nothing is recorded yet."""
        await self._delay_or_fail(channel, f"channel {channel} answers errors")

    async def _delay_or_fail(self, channel: str | None, what: str) -> None:
        delay = self.added_latency_s(channel)
        if delay > 0:
            await asyncio.sleep(delay)
        status = self.error_status(channel)
        if status is not None:
            raise ReplicaUnavailable(f"injected fault: {what}", status=status)

    def _current(self) -> list[ActiveFault]:
        now = self._monotonic()
        if any(f.expires_mono <= now for f in self._faults):
            self._faults = [f for f in self._faults if f.expires_mono > now]
        return self._faults

    def _hits(self, kind: FaultKind, channel: str | None) -> list[ActiveFault]:
        """The faults of `kind` on exactly `channel` (None: those on every channel) that this request draws."""
        return [
            f
            for f in self._current()
            if f.spec.kind == kind and f.spec.channel == channel and self._rng.random() < f.spec.ratio
        ]


FAULTS_KEY = web.AppKey("faults", Faults)
CHANNEL_CODES_KEY = web.AppKey("channel_codes", frozenset[str])
MAX_BODY_KEY = web.AppKey("max_body_bytes", int)


def parse_spec(data: object, channels: frozenset[str]) -> FaultSpec:
    """A fault body, or a 400 that names the field."""
    try:
        spec = FaultSpec.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(describe_each(exc)) from None
    if spec.channel is not None and spec.channel not in channels:
        raise ValidationFailed(
            [("channel", f"unknown channel {spec.channel!r} (known: {', '.join(sorted(channels))})")]
        )
    return spec


async def post_fault(request: web.Request) -> web.Response:
    require_admin(request, request.app[ADMIN_TOKEN_KEY])
    data = decode_json(await read_body(request, request.app[MAX_BODY_KEY]))
    spec = parse_spec(data, request.app[CHANNEL_CODES_KEY])
    faults = request.app[FAULTS_KEY]
    fault = faults.add(spec)
    return web.json_response({"fault": fault.as_json(fault.expires_mono - spec.duration_s)}, status=201)


async def get_faults(request: web.Request) -> web.Response:
    require_admin(request, request.app[ADMIN_TOKEN_KEY])
    return web.json_response({"faults": request.app[FAULTS_KEY].listing()})


async def delete_faults(request: web.Request) -> web.Response:
    require_admin(request, request.app[ADMIN_TOKEN_KEY])
    return web.json_response({"cleared": request.app[FAULTS_KEY].clear()})


def add_admin_routes(app: web.Application) -> None:
    app.router.add_post("/admin/faults", post_fault)
    app.router.add_get("/admin/faults", get_faults)
    app.router.add_delete("/admin/faults", delete_faults)
