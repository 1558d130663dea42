"""The simulated bank behind each quick-pay channel: a lognormal call latency and a concurrency ceiling.

Without these a mock gateway answers in microseconds at any load and no capacity curve has a knee. With them,
saturation looks like the real thing: up to `concurrency` calls are in flight per channel, the next ones wait
up to `queue_timeout_ms` for a slot (latency climbs) and are then shed with 503 CHANNEL_BUSY (throughput
flattens). The lognormal is fitted to the configured median and p99: mu = ln(median),
sigma = ln(p99 / median) / z(0.99).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

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


class _Channel:
    __slots__ = ("busy", "latency", "limit", "semaphore", "timeout_s")

    def __init__(self, config: ChannelConfig) -> None:
        self.latency = LatencyModel(config.latency_ms.median, config.latency_ms.p99)
        self.limit = config.concurrency
        self.semaphore = asyncio.Semaphore(config.concurrency)
        self.timeout_s = config.queue_timeout_ms / 1000.0
        self.busy = 0


class Bank:
    """`await bank.call(code)` holds one of the channel's slots for the simulated call, or sheds."""

    def __init__(self, channels: Iterable[ChannelConfig], rng: random.Random | None = None) -> None:
        self._channels = {config.code: _Channel(config) for config in channels}
        self._rng = rng or random.Random()

    def in_flight(self, code: str) -> int:
        return self._channels[code].busy

    async def call(self, code: str) -> None:
        """Raises `ChannelBusy` when no slot frees up within the channel's queue timeout."""
        channel = self._channels[code]
        if channel.latency.median_ms <= 0:
            return  # a bank that answers at once never has a call in flight: no slot to take
        if channel.semaphore.locked():
            try:
                async with asyncio.timeout(channel.timeout_s):
                    await channel.semaphore.acquire()
            except TimeoutError:
                raise ChannelBusy(
                    f"channel {code} has {channel.limit} calls in flight and none finished within "
                    f"{channel.timeout_s * 1000:g} ms",
                    retry_after_s=1.0,
                ) from None
        else:
            await channel.semaphore.acquire()
        channel.busy += 1
        try:
            delay = channel.latency.sample(self._rng)
            if delay > 0:
                await asyncio.sleep(delay)
        finally:
            channel.busy -= 1
            channel.semaphore.release()
