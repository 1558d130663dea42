"""The poll timer (loadtests/generator/ticks.py) on gevent's hub in the test's thread, no monkey-patching: a call
never starts before its time, calls due within one tick share one wake-up (at the grid's first tick at or after
them, or a late-firing earlier tick), an earlier call added later is not kept waiting for a later tick, and `stop`
drops the rest."""

from __future__ import annotations

import itertools
import math
import time

import gevent

from loadtests.generator.ticks import Ticks

TICK_S = 0.05
SLACK_S = 0.5  # a loaded machine's loop may start a call late; the lower bounds are the point, not this one


def test_calls_start_on_the_first_tick_at_or_after_their_time_never_before() -> None:
    started: dict[int, float] = {}
    ticks: Ticks[int] = Ticks(TICK_S, lambda item: started.setdefault(item, time.time()))
    base = time.time() + 0.1
    due = {item: base + item * 0.007 for item in range(30)}  # 30 calls over 0.2 s: about 4 ticks' worth
    for item, at in reversed(due.items()):
        ticks.at(at, item)
    gevent.sleep(0.2 + 2 * TICK_S + SLACK_S)
    assert sorted(started) == list(range(30))
    for item, at in due.items():
        tick = math.ceil(at / TICK_S) * TICK_S
        # a call that fell due while a tick's timer fired late starts with that tick's calls: after its time,
        # before its own tick, which is no worse
        assert started[item] >= at, "never before its time"
        assert started[item] < tick + SLACK_S
    # a timer per call would wake ~30 times, 7 ms apart; the grid wakes once per tick holding a call (5 here;
    # the bound leaves room for a loaded machine preempting the process between two calls of one tick)
    moments = sorted(started.values())
    wakeups = 1 + sum(1 for a, b in itertools.pairwise(moments) if b - a > 0.005)
    assert wakeups <= 10
    assert len(ticks) == 0


def test_a_call_due_earlier_than_the_armed_tick_is_not_kept_waiting() -> None:
    started: dict[str, float] = {}
    ticks: Ticks[str] = Ticks(TICK_S, lambda item: started.setdefault(item, time.time()))
    now = time.time()
    ticks.at(now + 2.0, "late")
    ticks.at(now + 0.05, "early")
    gevent.sleep(0.05 + TICK_S + SLACK_S)
    assert "early" in started and "late" not in started
    assert started["early"] >= now + 0.05
    ticks.stop()
    assert len(ticks) == 0


def test_stop_drops_the_calls_not_started_and_refuses_new_ones() -> None:
    started: list[str] = []
    ticks: Ticks[str] = Ticks(TICK_S, started.append)
    ticks.at(time.time() + 0.1, "dropped")
    ticks.stop()
    ticks.at(time.time(), "refused")
    gevent.sleep(0.1 + TICK_S + 0.2)
    assert started == []
