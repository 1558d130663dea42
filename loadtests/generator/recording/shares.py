"""A lost worker's share of the arrivals, told from what it reported: what the master counts dropped for it.

A worker Locust marks missing before its final message is lost for good. Every arrival of its share it never
reported sent is counted dropped in its own second, so that offered = sent + dropped still holds and the run is
invalid (the gateway did not get its load). Dropped, not re-assigned: the others' users are sized for their own
share, and arrivals moved to them seconds late would be late anyway.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from loadtests.generator.arrivals import RateCurve, arrival_times
from loadtests.generator.windows import Window
from loadtests.scenario.model import Scenario

# A worker's shares in time order: (from_s, index, count), each until the next one begins.
Epochs = list[tuple[float, int, int]]


def seconds_of_share(scenario: Scenario, epochs: Epochs) -> Counter[int]:
    """How many arrivals a worker has in each second of the run, from its shares — (from_s, index, count), each
    until the next one begins: the same split the workers themselves draw (arrivals.arrival_times, or a
    trace's schedule, which is never re-shared)."""
    found: Counter[int] = Counter()
    for number, (start, index, count) in enumerate(epochs):
        end = epochs[number + 1][0] if number + 1 < len(epochs) else math.inf
        replay = scenario.replay()
        if replay is not None:
            times: Iterable[float] = replay.schedule(index, count).t_s.tolist()
        else:
            process = scenario.arrivals.process
            assert process != "trace"
            curve = RateCurve(scenario.breakpoints())
            times = arrival_times(curve, process, seed=scenario.seed, worker_index=index, worker_count=count)
        found.update(math.floor(t) for t in times if start <= t < end)
    return found


def unreported(due: Counter[int], reported: dict[int, list[int]]) -> tuple[list[Window], int]:
    """The deltas that complete a lost worker's seconds — its arrivals `due` it never reported offered, and
    those never reported sent or dropped, counted dropped — and how many arrivals they drop. `reported`:
    second → [offered, sent, dropped] the worker reported."""
    deltas, dropped = [], 0
    for t in sorted(set(due) | set(reported)):
        offered, sent, gone = reported.get(t, [0, 0, 0])
        delta = Window(t)
        delta.offered = due.get(t, 0) - offered
        delta.dropped = due.get(t, 0) - sent - gone
        if delta.offered or delta.dropped:
            deltas.append(delta)
            dropped += delta.dropped
    return deltas, dropped
