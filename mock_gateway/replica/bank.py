"""The simulated bank behind each quick-pay channel: a per-second quota, a concurrency ceiling, a lognormal latency.

Without these a mock gateway answers in microseconds at any load and no capacity curve has a knee. With them,
saturation looks like the real thing: up to `concurrency` calls are in flight per channel, the next ones wait
up to `queue_timeout_ms` for a slot (latency climbs) and are then shed with 503 CHANNEL_BUSY (throughput
flattens). The lognormal is fitted to the configured median and p99: mu = ln(median),
sigma = ln(p99 / median) / z(0.99).

A bank also grants each channel a quota of calls per second (`tps`). Gateways queue toward it rather than
refuse: a call past the quota waits its turn, paced by asyncio-throttle (a pacer toward a downstream, unlike the
admission caps in limits.py, which answer at once), and is shed with 503 CHANNEL_BUSY when its turn would come
after `queue_timeout_ms`. The quota is waited for first and holds no concurrency slot: a call queued behind the
quota must not keep a slot from a call the bank would take now. One `queue_timeout_ms` bounds both waits.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

from asyncio_throttle import Throttler

from mock_gateway.config import ChannelConfig
from mock_gateway.errors import ChannelBusy

Z_99 = 2.3263478740408408


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """Bank call latency in seconds; a zero median means no simulated latency at all."""

    median_ms: float
    p99_ms: float

    def sample(self, rng: random.Random) -> float:
        if self.median_ms <= 0:
            return 0.0
        sigma = math.log(max(self.p99_ms, self.median_ms) / self.median_ms) / Z_99
        return rng.lognormvariate(math.log(self.median_ms), sigma) / 1000.0


def quota_throttler(tps: float, *, settling: bool = False) -> Throttler | None:
    """A pacer admitting `tps` calls per second on average; None for no quota. asyncio-throttle counts whole
    calls per period, so a fractional quota becomes n calls per n / tps seconds (0.5/s: 1 call per 2 s).

    A waiting call looks again every 10 ms. `settling`: the one waiter of an async channel's settlement looks
    again after the average gap between two turns instead (10-250 ms), so a slow quota and a long backlog do
    not wake the replica a hundred times a second for nothing."""
    if tps <= 0:
        return None
    calls = max(1, round(tps))
    retry_s = min(max(1 / tps, 0.01), 0.25) if settling else 0.01
    return Throttler(rate_limit=calls, period=calls / tps, retry_interval=retry_s)


class _Channel:
    __slots__ = ("busy", "code", "latency", "limit", "quota", "semaphore", "timeout_s", "waiting")

    def __init__(self, config: ChannelConfig, quota_share: float) -> None:
        self.code = config.code
        self.latency = LatencyModel(config.latency_ms.median, config.latency_ms.p99)
        self.limit = config.concurrency
        self.semaphore = asyncio.Semaphore(config.concurrency)
        self.timeout_s = config.queue_timeout_ms / 1000.0
        self.quota = quota_throttler(config.tps * quota_share, settling=config.settlement == "async")
        self.busy = 0
        self.waiting = 0  # calls waiting for their turn in the quota

    async def wait_for_quota(self) -> float:
        """Waits for a turn in the quota; returns what is left of the queue timeout for the slot."""
        if self.quota is None:
            return self.timeout_s
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.waiting += 1
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.quota.acquire()
        except TimeoutError:
            raise ChannelBusy(
                f"channel {self.code} is at its bank quota of {self.quota.rate_limit / self.quota.period:g} "
                f"calls/s and no turn came within {self.timeout_s * 1000:g} ms",
                retry_after_s=1.0,
            ) from None
        finally:
            self.waiting -= 1
        return max(0.0, self.timeout_s - (loop.time() - started))

    async def take_slot(self, timeout_s: float) -> None:
        if not self.semaphore.locked():
            await self.semaphore.acquire()
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self.semaphore.acquire()
        except TimeoutError:
            raise ChannelBusy(
                f"channel {self.code} has {self.limit} calls in flight and none finished within "
                f"{self.timeout_s * 1000:g} ms",
                retry_after_s=1.0,
            ) from None


class Bank:
    """`await bank.call(code)` waits for the channel's quota, then holds one of its slots for the simulated
    call; either wait past the queue timeout sheds the call.

    `quota_share` is this replica's part of each channel's bank quota (`tps`): 1 alone or in active-standby
    (one replica serves), 1/N for each of N active-active replicas — the bank grants its quota to the merchant,
    not to each gateway instance, so the cluster together never calls a channel more than `tps` times a second.
    """

    def __init__(
        self, channels: Iterable[ChannelConfig], rng: random.Random | None = None, quota_share: float = 1.0
    ) -> None:
        self._channels = {config.code: _Channel(config, quota_share) for config in channels}
        self._rng = rng or random.Random()

    def in_flight(self, code: str) -> int:
        return self._channels[code].busy

    def waiting_for_quota(self, code: str) -> int:
        return self._channels[code].waiting

    async def settlement_turn(self, code: str) -> None:
        """Waits, however long, for a turn in the channel's quota: settlement queues toward the bank (the
        backlog) instead of being shed. Only one settlement worker per channel waits here at a time, so the
        throttler's polling costs nothing however long the backlog grows."""
        quota = self._channels[code].quota
        if quota is not None:
            await quota.acquire()

    async def call(self, code: str) -> None:
        """Raises `ChannelBusy` when the quota or a slot is not granted within the channel's queue timeout."""
        channel = self._channels[code]
        left_s = await channel.wait_for_quota()
        if channel.latency.median_ms <= 0:
            return  # a bank that answers at once never has a call in flight: no slot to take
        await channel.take_slot(left_s)
        channel.busy += 1
        try:
            delay = channel.latency.sample(self._rng)
            if delay > 0:
                await asyncio.sleep(delay)
        finally:
            channel.busy -= 1
            channel.semaphore.release()
