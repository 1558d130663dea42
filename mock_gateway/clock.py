"""The simulated clock: business days are Asia/Shanghai days on a clock that may run faster than wall time.

A festival day compressed into a minute (`speed = 1440`) must still reset quotas at Shanghai midnight, and every
replica of a cluster must agree on the simulated time, which is why the clock is anchored to a wall instant
(`anchor_unix`) rather than to each process's start. Only the daily caps and timestamps use this clock; the
per-second rate caps are about real throughput and use the monotonic wall clock.

The same formula is read back from a run folder by `runfolder.clock.ClusterClock` (for the load generator and
the reports), and both define `SHANGHAI`: the house rules forbid `mock_gateway` to import either sibling package
(it must run alone as a replica) and forbid `reports` to import `mock_gateway`, so neither can be the other's
home. The contract between them is the `clock` object of cluster.json (docs/internals.md §3).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from mock_gateway.config import ClockConfig

SHANGHAI = ZoneInfo("Asia/Shanghai")


class SimClock:
    """Simulated time = start + (wall - anchor) x speed; `wall` is injectable so tests can move it."""

    __slots__ = ("_anchor", "_speed", "_start_unix", "_wall")

    def __init__(
        self,
        *,
        speed: float = 1.0,
        start: datetime | None = None,
        anchor_unix: float | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._wall = wall
        self._speed = speed
        self._anchor = wall() if anchor_unix is None else anchor_unix
        self._start_unix = self._anchor if start is None else start.timestamp()

    @classmethod
    def from_config(cls, config: ClockConfig, wall: Callable[[], float] = time.time) -> SimClock:
        return cls(speed=config.speed, start=config.start, anchor_unix=config.anchor_unix, wall=wall)

    def now(self) -> datetime:
        simulated = self._start_unix + (self._wall() - self._anchor) * self._speed
        return datetime.fromtimestamp(simulated, SHANGHAI)


def business_date(moment: datetime) -> date:
    return moment.astimezone(SHANGHAI).date()


def resets_at(moment: datetime) -> datetime:
    """The next Shanghai midnight after `moment`: when today's daily quotas start afresh."""
    day = business_date(moment) + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=SHANGHAI)
