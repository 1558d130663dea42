"""What one replica holds between requests, reached through `app[STATE_KEY]` and never a global.

The handlers of `repayments` and `service` read it; `app.create_app` builds it. A failed ledger call becomes
this replica's 503 in one place (`from_ledger`): nothing was recorded, so the client may simply retry.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

from aiohttp import web

from mock_gateway.clock import SimClock
from mock_gateway.config import GatewayConfig, Rates
from mock_gateway.errors import LedgerError, ReplicaUnavailable
from mock_gateway.limits import Admission, ScheduledAdmission
from mock_gateway.quotas import Usage
from mock_gateway.replica.bank import Bank
from mock_gateway.replica.faults import Faults
from mock_gateway.replica.ledger import Ledger
from mock_gateway.replica.metrics import Metrics
from mock_gateway.replica.settlement import Settler
from mock_gateway.rules import poll_after
from mock_gateway.signing import RequestSigning

log = logging.getLogger(__name__)
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


async def from_ledger(step: Awaitable[_T], what: str, detail: str) -> _T:
    """The result of a ledger call, or this replica's 503 with `detail` when the ledger failed it."""
    try:
        return await step
    except LedgerError as exc:
        log.warning("%s failed: %s", what, exc)
        raise ReplicaUnavailable(detail, retry_after_s=1) from None
