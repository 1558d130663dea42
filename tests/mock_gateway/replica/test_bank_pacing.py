"""The bank's per-second quota (`[[channels]] tps`): calls past it wait their turn, bounded by the queue timeout,
and a call waiting for the quota holds no concurrency slot. Unit tests on `Bank` itself, on the real event loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import pytest

from mock_gateway.config import ChannelConfig, LatencyConfig
from mock_gateway.errors import ChannelBusy
from mock_gateway.replica.bank import Bank, quota_throttler

TPS = 10


def channel(**overrides: object) -> ChannelConfig:
    values: dict[str, object] = {
        "code": "ICBC",
        "single_fen": 5_000_000,
        "card_daily_fen": 5_000_000,
        "tps": TPS,
        "queue_timeout_ms": 5_000,
        "latency_ms": LatencyConfig(median=0, p99=0),
    }
    values.update(overrides)
    return ChannelConfig.model_validate(values)


async def timed_call(bank: Bank) -> tuple[float, float | None]:
    """(start, end of the bank call) in monotonic seconds; end None when the call was shed."""
    started = time.monotonic()
    try:
        await bank.call("ICBC")
    except ChannelBusy:
        return started, None
    return started, time.monotonic()


async def until(condition: Callable[[], bool]) -> None:
    """Until `condition` holds (polled between loop turns, not after a fixed sleep that a busy machine outlasts);
    the 10 s bound only turns a hang into a failure."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.001)


def most_in_any_second(ends: list[float]) -> int:
    ends = sorted(ends)
    return max(sum(1 for other in ends[i:] if other - end < 1.0) for i, end in enumerate(ends))


async def test_a_burst_of_three_seconds_of_quota_is_paced_over_three_seconds() -> None:
    bank = Bank([channel()])
    results = await asyncio.gather(*(timed_call(bank) for _ in range(3 * TPS)))
    ends = [end for _, end in results if end is not None]
    assert len(ends) == 3 * TPS  # none shed: each turn came within the 5 s queue timeout
    assert most_in_any_second(ends) <= TPS  # never more than the quota in any one second
    assert max(ends) - min(ends) >= 2.0  # so the burst is spread over three seconds of turns


async def test_no_call_waits_past_the_queue_timeout_for_its_turn() -> None:
    bank = Bank([channel(queue_timeout_ms=400)])
    results = await asyncio.gather(*(timed_call(bank) for _ in range(3 * TPS)))
    served = [end for _, end in results if end is not None]
    # The first second's quota goes at once; every later turn would come ~1 s on, past the 400 ms bound.
    assert len(served) == TPS
    assert bank.waiting_for_quota("ICBC") == 0


async def test_a_call_waiting_for_the_quota_holds_no_concurrency_slot() -> None:
    """Quota 1/s and one slot: a call in the bank (slow) plus one waiting for the next quota turn. While the
    second waits for its turn, the slot count shows only the first; the slot frees when the first returns."""
    bank = Bank([channel(tps=1, concurrency=1, latency_ms=LatencyConfig(median=300, p99=300))])
    first = asyncio.create_task(bank.call("ICBC"))
    await until(lambda: bank.in_flight("ICBC") == 1)
    second = asyncio.create_task(bank.call("ICBC"))
    await until(lambda: bank.waiting_for_quota("ICBC") == 1)
    assert bank.in_flight("ICBC") == 1
    await first
    assert bank.in_flight("ICBC") == 0  # the first call is done and the second still waits for its turn
    assert bank.waiting_for_quota("ICBC") == 1
    await second
    assert bank.waiting_for_quota("ICBC") == 0


async def test_the_slot_wait_gets_only_what_the_quota_wait_left_of_the_timeout() -> None:
    """One slot held by a long call: a call that waited for its quota turn gets the rest of one queue timeout
    for the slot, never a second full timeout, and is shed."""
    bank = Bank([channel(tps=2, concurrency=1, queue_timeout_ms=700, latency_ms=LatencyConfig(median=5000, p99=5000))])
    holder = asyncio.create_task(bank.call("ICBC"))
    await until(lambda: bank.in_flight("ICBC") == 1)
    second = asyncio.create_task(bank.call("ICBC"))  # the second turn of this period: slot wait only
    third = asyncio.create_task(bank.call("ICBC"))  # waits ~1 s for a turn: past 700 ms, shed by the quota
    with pytest.raises(ChannelBusy, match="calls in flight"):
        await second
    with pytest.raises(ChannelBusy, match="bank quota"):
        await third
    holder.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await holder


def test_a_fractional_quota_is_whole_calls_over_a_longer_period() -> None:
    half = quota_throttler(0.5)
    assert half is not None and (half.rate_limit, half.period) == (1, 2.0)
    assert quota_throttler(0) is None


async def test_a_zero_queue_timeout_refuses_at_once_past_the_quota() -> None:
    bank = Bank([channel(queue_timeout_ms=0)])
    results = await asyncio.gather(*(timed_call(bank) for _ in range(2 * TPS)))
    assert sum(end is not None for _, end in results) == TPS
