"""Asynchronous settlement: the payments a replica accepted (202) or took over, settled with the bank later.

Per async channel one worker takes the backlog in arrival order (read from the ledger, see `_Lane`), waits for
a turn in the bank quota (`tps`, asyncio-throttle, this replica's share in active-active), asks the bank, which
answers after a lognormal `settle_ms`: succeeded, or refused (`settle_fail_ratio`, BANK_DECLINED); a lost answer
(`unknown_ratio`) is asked again after `unknown_ms`, with a quota turn of its own. The bank is idempotent per
payment, as real banks are per merchant order number, so a takeover never turns a refusal into money.

Ownership moves through the ledger's leases (docs/gateway.md, "Who settles a payment"): the final write is
conditional on the epoch its writer holds, so of two replicas that both asked the bank exactly one writes the
final state and sends the callback. Callbacks go to the payment's loopback `notify_url`, signed
`Surge-Signature: sha256=<hex HMAC-SHA256 of the body>` with `settlement.notify_secret`, retried on a bounded
schedule until a 2xx; a callback still owed when its replica dies is owed by the replica that takes the payment
over: at least once, never zero times.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import aiohttp

from mock_gateway.config import ChannelConfig, GatewayConfig, SettlementConfig
from mock_gateway.errors import LedgerError
from mock_gateway.replica.bank import Bank, LatencyModel
from mock_gateway.replica.faults import Faults
from mock_gateway.replica.ledger import Ledger
from mock_gateway.replica.ledger.schema import Settlement
from mock_gateway.replica.metrics import Metrics

log = logging.getLogger(__name__)

DECLINED: Final = "BANK_DECLINED"
LEDGER_RETRY_S: Final = 1.0  # a final write the ledger refused is asked for again after this
READ_AHEAD: Final = 256  # payments read from the ledger's backlog at a time
SIGNATURE_HEADER: Final = "Surge-Signature"


def sign(body: bytes, secret: str) -> str:
    """The `Surge-Signature` value of a callback body: `sha256=` + the hex HMAC-SHA256 of the exact bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def bank_refuses(repayment_id: str, fail_ratio: float) -> bool:
    """The bank's decision on a payment: a pure function of its id, so every replica that asks gets the same."""
    if fail_ratio <= 0:
        return False
    draw = int.from_bytes(hashlib.sha256(repayment_id.encode()).digest()[:8], "big") / 2**64
    return draw < fail_ratio


def retry_delays_s(settings: SettlementConfig) -> list[float]:
    """The wait before each retry of a callback: `callback_backoff_ms`, doubling, capped at
    `callback_backoff_max_ms`, `callback_attempts - 1` of them (defaults: 0.25, 0.5, 1, 2, 4, 4, 4 s)."""
    first, cap = settings.callback_backoff_ms / 1000, settings.callback_backoff_max_ms / 1000
    return [min(first * 2**n, cap) for n in range(settings.callback_attempts - 1)]


def callback_body(document: dict[str, Any]) -> bytes:
    """What a callback carries: the payment's final state and the key the client sent."""
    return json.dumps(
        {
            "repayment_id": document["repayment_id"],
            "idempotency_key": document["idempotency_key"],
            "status": document["status"],
            "code": document.get("code"),
            "amount_fen": document["amount_fen"],
            "settled_at": document["settled_at"],
        },
        separators=(",", ":"),
    ).encode()


class _Pending(NamedTuple):
    """A payment on its way to the bank."""

    repayment_id: str
    epoch: int
    accepted_unix: float
    requery: bool  # the bank already has it; only its answer is asked for


@dataclass(slots=True)
class _Lane:
    """One async channel's backlog on this replica. The backlog itself is in the ledger (the payments this
    process holds that wait for the bank); the lane holds only the next few of them read from it, the ones with
    the bank (`busy`), and the count (`waiting`). Held in memory instead, a backlog of 12,000 made every request
    of the replica ~4-5 % dearer (its objects, and the garbage collections over them; docs/gateway.md)."""

    config: ChannelConfig
    delay: LatencyModel
    ahead: deque[_Pending] = field(default_factory=deque)  # read from the ledger, not yet taken
    urgent: deque[_Pending] = field(default_factory=deque)  # re-asks, and takeovers the reading has passed
    cursor: int = 0  # the rowid read up to
    busy: set[str] = field(default_factory=set)  # taken from the backlog and not final yet
    waiting: int = 0  # held and not final: the backlog gauge
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def backlog(self) -> int:
        return self.waiting

    def push_urgent(self, pending: _Pending) -> None:
        self.urgent.append(pending)
        self.wake.set()

    def restart(self) -> None:
        """Read the backlog again from its start: what this replica still holds is what the ledger says."""
        self.ahead.clear()
        self.urgent = deque(item for item in self.urgent if item.requery and item.repayment_id in self.busy)
        self.cursor = 0
        self.wake.set()


class Settler:
    """Started and stopped with the replica's app; `accepted()` after each 202 commits."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        ledger: Ledger,
        bank: Bank,
        faults: Faults,
        metrics: Metrics,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = config.settlement
        self._ledger = ledger
        self._bank = bank
        self._faults = faults
        self._metrics = metrics
        self._rng = rng or random.Random()
        self._lease_s = config.settlement.lease_ms / 1000
        self._delays = retry_delays_s(config.settlement)
        self._lanes = {
            channel.code: _Lane(channel, LatencyModel(channel.settle_ms.median, channel.settle_ms.p99))
            for channel in config.channels
            if channel.settlement == "async"
        }
        self._tasks: set[asyncio.Task[None]] = set()
        self._fresh: set[str] | None = None  # taken to the bank during a lease upkeep, while it runs
        self._session: aiohttp.ClientSession | None = None
        for code, lane in self._lanes.items():
            metrics.settlement_backlog.labels(code).set_function(lane.backlog)
            metrics.settlement_in_flight.labels(code).set_function(lane.busy.__len__)

    @property
    def enabled(self) -> bool:
        return bool(self._lanes)

    async def start(self) -> None:
        if not self._lanes:
            return
        timeout = aiohttp.ClientTimeout(total=self._settings.callback_timeout_ms / 1000)
        self._session = aiohttp.ClientSession(timeout=timeout)
        await self._upkeep_once()  # this replica's lease exists before it accepts a payment
        for lane in self._lanes.values():
            self._spawn(self._work(lane))
        self._spawn(self._upkeep())

    async def stop(self) -> None:
        """Stop settling; what this replica held is taken over by another once its leases lapse."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def accepted(self, channel: str) -> None:
        """A payment this replica just accepted and committed: the worker reads it from the ledger."""
        lane = self._lanes[channel]
        lane.waiting += 1
        lane.wake.set()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the bank ---------------------------------------------------------------------------------

    async def _work(self, lane: _Lane) -> None:
        code = lane.config.code
        while True:
            pending = await self._next(lane)
            await self._stalled(code)
            await self._bank.settlement_turn(code)
            self._spawn(self._settle(lane, pending))

    async def _next(self, lane: _Lane) -> _Pending:
        """The next payment for the bank: a re-ask or a takeover first, then the backlog in arrival order."""
        caught_up = False
        while True:
            if lane.urgent:
                pending = lane.urgent.popleft()
                if pending.requery:
                    if pending.repayment_id in lane.busy:  # not taken away meanwhile
                        return pending
                    continue
            elif lane.ahead:
                pending = lane.ahead.popleft()
            else:
                if caught_up:  # the read cleared `wake`: whatever was accepted after it has set it again
                    await lane.wake.wait()  # one group commit's acceptances wake it once: one read for them all
                caught_up = await self._read_ahead(lane)
                continue
            if pending.repayment_id in lane.busy:
                continue  # read again while with the bank (a takeover the reading also found)
            lane.busy.add(pending.repayment_id)
            if self._fresh is not None:
                self._fresh.add(pending.repayment_id)
            return pending

    async def _read_ahead(self, lane: _Lane) -> bool:
        """Read the next payments of the backlog; True when it has none beyond them."""
        lane.wake.clear()  # an acceptance committed from now on wakes the worker again
        try:
            rows = await self._ledger.waiting(lane.config.code, lane.cursor, READ_AHEAD)
        except LedgerError as exc:
            log.warning("reading the settlement backlog failed, reading again: %s", exc)
            await asyncio.sleep(LEDGER_RETRY_S)
            return False
        if rows:
            lane.cursor = rows[-1][0]
            lane.ahead.extend(_Pending(repayment_id, epoch, at, False) for _, repayment_id, epoch, at in rows)
        return len(rows) < READ_AHEAD

    async def _stalled(self, code: str) -> None:
        """Wait out a `settlement_stall` fault: the bank settles nothing meanwhile."""
        # A stall is a deadline, not an event: sleep to it, then look again (another may have been injected).
        while self._faults.active and (left := self._faults.stall_left_s(code)) > 0:  # noqa: ASYNC110
            await asyncio.sleep(left)

    async def _settle(self, lane: _Lane, item: _Pending) -> None:
        config = lane.config
        if not item.requery:
            delay = lane.delay.sample(self._rng)
            if delay > 0:
                await asyncio.sleep(delay)
        await self._stalled(config.code)
        if item.repayment_id not in lane.busy:
            return  # taken over by another replica while this one was paused
        if config.unknown_ratio > 0 and self._rng.random() < config.unknown_ratio:
            self._metrics.settlements.labels(config.code, "unknown").inc()
            self._requery_later(lane, item, config.unknown_ms / 1000)
            return
        refused = bank_refuses(item.repayment_id, config.settle_fail_ratio)
        status, code = ("failed", DECLINED) if refused else ("succeeded", None)
        try:
            row = await self._ledger.settle(item.repayment_id, item.epoch, status, code)
        except LedgerError as exc:
            log.warning("settlement write failed, asking again: %s", exc)
            self._requery_later(lane, item, LEDGER_RETRY_S)
            return
        if item.repayment_id in lane.busy:
            lane.busy.discard(item.repayment_id)
            lane.waiting -= 1
        if row is None:
            self._metrics.settlements.labels(config.code, "fenced").inc()
            return
        self._metrics.settlements.labels(config.code, status).inc()
        self._metrics.settle_seconds.labels(config.code).observe(max(0.0, time.time() - item.accepted_unix))
        if row["notify_url"]:
            await self._notify(item.repayment_id, item.epoch, config.code, row["notify_url"], callback_body(row))

    def _requery_later(self, lane: _Lane, item: _Pending, after_s: float) -> None:
        asyncio.get_running_loop().call_later(after_s, lane.push_urgent, item._replace(requery=True))

    # --- ownership ------------------------------------------------------------------------------

    async def _upkeep(self) -> None:
        """Renew this replica's lease and take over stranded payments, every third of a lease."""
        while True:
            await asyncio.sleep(self._lease_s / 3)
            await self._upkeep_once()

    async def _upkeep_once(self) -> None:
        # A payment taken to the bank while the ledger is asked may be missing from its answer and is still this
        # replica's: noted as it comes (O(1)), not by copying what is with the bank first.
        self._fresh = set()
        try:
            held, taken = await self._ledger.maintain(self._lease_s)
        except LedgerError as exc:
            log.warning("settlement lease upkeep failed: %s", exc)
            return
        finally:
            fresh, self._fresh = self._fresh, None
        for item in taken:
            self._take(item)
        if held is not None:  # paused past the lease: what another replica took is no longer this one's
            await self._recount(held | fresh)

    async def _recount(self, held: set[str]) -> None:
        """After a pause: drop what moved away (its late write is fenced anyway), count and read what is left."""
        for code, lane in self._lanes.items():
            lane.busy.intersection_update(held)
            try:
                lane.waiting = await self._ledger.waiting_count(code)
            except LedgerError as exc:
                log.warning("counting the settlement backlog failed: %s", exc)
            lane.restart()

    def _take(self, item: Settlement) -> None:
        lane = self._lanes.get(item.channel)
        if lane is None:
            return  # a channel this replica's config no longer has as async: leave it to one that does
        self._metrics.settlement_takeovers.inc()
        if item.processing:
            lane.waiting += 1
            if item.rowid <= lane.cursor:  # else the worker reads it in its turn
                lane.urgent.append(_Pending(item.repayment_id, item.epoch, item.accepted_unix, False))
            lane.wake.set()
        elif item.notify_url:
            body = callback_body(item.document)
            self._spawn(self._notify(item.repayment_id, item.epoch, item.channel, item.notify_url, body))

    # --- callbacks -------------------------------------------------------------------------------

    async def _notify(self, repayment_id: str, epoch: int, channel: str, url: str, body: bytes) -> None:
        """Deliver until a 2xx, on the documented schedule; the outcome is written back (fenced by epoch)."""
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, self._settings.notify_secret)}
        for attempt, wait_s in enumerate([0.0, *self._delays]):
            if wait_s:
                await asyncio.sleep(wait_s)
            if attempt == 0 and self._faults.active and self._faults.drop_callback(channel):
                self._metrics.callbacks.labels("dropped").inc()
                continue
            if await self._deliver(url, body, headers):
                if self._faults.active and self._faults.duplicate_callback(channel):
                    self._metrics.callbacks.labels("duplicate").inc()
                    await self._deliver(url, body, headers, count=False)
                await self._callback_done(repayment_id, epoch, "delivered")
                return
        self._metrics.callbacks.labels("gave_up").inc()
        await self._callback_done(repayment_id, epoch, "gave_up")

    async def _deliver(self, url: str, body: bytes, headers: dict[str, str], *, count: bool = True) -> bool:
        assert self._session is not None
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                await response.read()
                ok = 200 <= response.status < 300
                outcome = "delivered" if ok else "refused"
        except (aiohttp.ClientError, TimeoutError):
            ok, outcome = False, "error"
        if count:
            self._metrics.callbacks.labels(outcome).inc()
        return ok

    async def _callback_done(self, repayment_id: str, epoch: int, outcome: str) -> None:
        try:
            await self._ledger.callback_done(repayment_id, epoch, outcome)
        except LedgerError as exc:  # the callback stays owed: whoever holds the payment next delivers it again
            log.warning("recording a callback's outcome failed: %s", exc)
