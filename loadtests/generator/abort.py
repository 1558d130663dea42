"""The live SLO guard of a scenario's `[[abort]]` rules, judged on the master from the merged per-second windows.

Pure: windows in, a `Trip` (or None) out. The recorder feeds every delta it merges (`add`) and asks once a
second (`check`) about the seconds whose deltas have all arrived — a second is complete once every process has
flushed after its end, i.e. two seconds after it began (FLUSH_INTERVAL_S 1 s). A window with no completed
attempt judges nothing: an idle second is no evidence that the target is failing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from loadtests.generator.windows import Window, WindowBook, new_histogram
from loadtests.scenario.parts import AbortRule
from runfolder.outcomes import GOOD, OUTCOME_CLASSES

COMPLETE_AFTER_S = 2  # second t is complete once t + COMPLETE_AFTER_S has begun (see the module docstring)
# An [[abort]] rule's `<class>_ratio` metric for each class that is not a good answer (docs/scenarios.md).
RATIO_CLASSES = {f"{cls}_ratio": cls for cls in OUTCOME_CLASSES if cls not in GOOD}


@dataclass(frozen=True, slots=True)
class Trip:
    rule: AbortRule
    at_s: float
    value: float


class AbortGuard:
    """Keeps the recent merged seconds and judges each rule over its window of complete seconds."""

    def __init__(self, rules: Sequence[AbortRule]) -> None:
        self.rules = tuple(rules)
        self.book = WindowBook()
        self._keep_s = max((rule.window_s for rule in self.rules), default=0) + COMPLETE_AFTER_S + 2

    def add(self, window: Window) -> None:
        if self.rules:
            self.book.merge(window)

    def check(self, elapsed_s: float) -> Trip | None:
        """The first rule over its bound at `elapsed_s` seconds since t=0, or None."""
        newest = int(elapsed_s) - COMPLETE_AFTER_S  # the newest complete second
        self.book.take(newest - self._keep_s)  # forget seconds no window can reach any more
        for rule in self.rules:
            first = newest - rule.window_s + 1
            if elapsed_s < rule.grace_s or first < 0:
                continue
            value = measure(
                rule.metric, [self.book.windows[t] for t in range(first, newest + 1) if t in self.book.windows]
            )
            if value is not None and value > rule.above:
                return Trip(rule, round(elapsed_s, 3), round(value, 4))
        return None


def measure(metric: str, windows: Sequence[Window]) -> float | None:
    """The rule's metric over `windows`; None when no attempt completed in them."""
    completed = sum(stats.count for window in windows for stats in window.classes.values())
    if completed == 0:
        return None
    if metric in RATIO_CLASSES:
        cls = RATIO_CLASSES[metric]
        return sum(w.classes[cls].count for w in windows if cls in w.classes) / completed
    merged = new_histogram()
    for window in windows:
        for name, stats in window.classes.items():
            if name != "rate_limited":  # answered at once by design: not the latency a payer waits
                merged.add(stats.intended)
    if merged.get_total_count() == 0:
        return None
    return float(merged.get_value_at_percentile(99.0)) / 1000.0
