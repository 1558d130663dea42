"""A lost worker's seconds completed from what it reported (recording/shares.py): offered = sent + dropped again."""

from __future__ import annotations

from collections import Counter

from loadtests.generator.recording.shares import unreported


def test_what_a_lost_worker_never_reported_is_offered_and_dropped_in_its_own_second() -> None:
    due = Counter({0: 5, 1: 5, 2: 4})
    reported = {0: [5, 4, 1], 1: [2, 2, 0], 3: [0, 0, 0]}  # second → [offered, sent, dropped] it reported
    deltas, dropped = unreported(due, reported)
    assert [(d.t, d.offered, d.dropped) for d in deltas] == [(1, 3, 3), (2, 4, 4)]
    assert dropped == 7
    for t, due_count in due.items():
        offered, sent, gone = reported.get(t, [0, 0, 0])
        extra = next(((d.offered, d.dropped) for d in deltas if d.t == t), (0, 0))
        assert offered + extra[0] == due_count == sent + gone + extra[1]


def test_a_worker_that_reported_everything_adds_nothing() -> None:
    assert unreported(Counter({0: 3}), {0: [3, 3, 0]}) == ([], 0)
