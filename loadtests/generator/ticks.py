"""Calls due at scattered times, started on one timer at the first tick of a fixed grid at or after their time.

At a few hundred calls a second the generator's CPU goes to waking up (the kernel's epoll, gevent's loop, a
greenlet switch), not to the call itself: a greenlet sleeping until each call's time wakes the process once per
call. Here one loop timer is armed for the earliest tick holding a due call; when it fires, every call due by
then starts, each in its own greenlet, so calls that wait on the network (a status poll's GET) wait together and
their answers tend to come back in one wake-up as well. A call never starts before its time, and starts at most
`tick_s` after it (plus whatever delays the process's loop as a whole).
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import gevent

Item = TypeVar("Item")


class Ticks(Generic[Item]):
    """`call(item)` for each item added with `at(due, item)`, in its own greenlet, on the grid of `tick_s` (module
    docstring); `stop` drops what is not started yet."""

    def __init__(self, tick_s: float, call: Callable[[Item], object]) -> None:
        self.tick_s = tick_s
        self.call = call
        self._due: list[tuple[float, int, Item]] = []  # (due, order of adding, item): a heap
        self._order = itertools.count()
        self._timer: Any = None
        self._armed_for = math.inf  # the tick the timer fires at
        self._stopped = False

    def __len__(self) -> int:
        return len(self._due)

    def at(self, due: float, item: Item) -> None:
        """Start `call(item)` at the first tick at or after `due` (unix time)."""
        if self._stopped:
            return
        heapq.heappush(self._due, (due, next(self._order), item))
        tick = self._tick(due)
        if tick < self._armed_for:
            self._arm(tick)

    def stop(self) -> None:
        self._stopped = True
        self._due.clear()
        if self._timer is not None:
            self._timer.close()
            self._timer = None
        self._armed_for = math.inf

    def _tick(self, due: float) -> float:
        return max(due, math.ceil(due / self.tick_s) * self.tick_s)  # max: the division may round below `due`

    def _arm(self, tick: float) -> None:
        if self._timer is not None:
            self._timer.close()
        self._timer = gevent.get_hub().loop.timer(max(0.0, tick - time.time()))
        self._timer.start(self._fire, update=True)  # the loop's own clock may be stale: never fire before `tick`
        self._armed_for = tick

    def _fire(self) -> None:
        self._armed_for = math.inf
        now = time.time()
        due = self._due
        while due and due[0][0] <= now:
            gevent.spawn(self.call, heapq.heappop(due)[2])
        if due:
            self._arm(self._tick(due[0][0]))
