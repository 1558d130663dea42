"""Per-second windows of a run (internals §5 `windows.jsonl`): counts plus HdrHistograms per outcome class.

A window is a commutative monoid — `merge` adds counts and histograms and takes the max of the generator's
health — so a window recorded by N processes, shipped as JSON deltas in any order and merged, equals the window
one process would have recorded over the same attempts (within HDR precision, 3 significant digits). That is the
property `--processes N` and multi-machine runs rely on, and the reports engineer decodes the same JSON.

No Locust and no I/O here: recording/ moves the JSON, reports read it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from runfolder.outcomes import OUTCOME_CLASSES, OutcomeClass

HDR_LOWEST_US = 1
HDR_HIGHEST_US = 3_600_000_000
HDR_DIGITS = 3
ARRIVAL_FIELDS = ("offered", "sent", "late", "dropped")


def new_histogram() -> HdrHistogram:
    return HdrHistogram(HDR_LOWEST_US, HDR_HIGHEST_US, HDR_DIGITS)


def decode_histogram(text: str) -> HdrHistogram:
    """A base64 `encode()`d histogram from windows.jsonl back into an HdrHistogram."""
    return HdrHistogram.decode(text.encode("ascii"))


def record_counted(histogram: HdrHistogram, values_us: list[int], highest: int = HDR_HIGHEST_US) -> None:
    """Record whole microseconds into `histogram`, each distinct value once with its count, and empty the list.

    Why batches: hdrh's `record_value` is pure Python, ~1.5 µs a call, and the generator took three per attempt
    (intended and service time, wake-up lag) as it sent; appending an int costs ~0.05 µs, and a second's values
    repeat (thousands of attempts spread over a few hundred distinct microsecond values), so counting them
    first (collections.Counter, in C) records the same histogram with far fewer calls, once a second.
    """
    for value, count in Counter(values_us).items():
        histogram.record_value(min(highest, max(HDR_LOWEST_US, value)), count)
    values_us.clear()


class ClassStats:
    """One outcome class in one second: how many attempts, latency from intended send and from actual send.

    `add` keeps the two latencies as whole microseconds; reading `intended` or `service` records them into the
    histograms first (record_counted), so no reader ever sees a histogram without the latest attempts."""

    __slots__ = ("_intended", "_pending_intended_us", "_pending_service_us", "_service", "count")

    def __init__(self, count: int = 0, intended: HdrHistogram | None = None, service: HdrHistogram | None = None):
        self.count = count
        self._intended = intended if intended is not None else new_histogram()
        self._service = service if service is not None else new_histogram()
        self._pending_intended_us: list[int] = []
        self._pending_service_us: list[int] = []

    def add(self, intended_us: float, service_us: float) -> None:
        """One attempt's latencies (µs; negative or huge ones are clamped into the histograms' range)."""
        self.count += 1
        self._pending_intended_us.append(int(intended_us + 0.5))
        self._pending_service_us.append(int(service_us + 0.5))

    @property
    def intended(self) -> HdrHistogram:
        record_counted(self._intended, self._pending_intended_us)
        return self._intended

    @property
    def service(self) -> HdrHistogram:
        record_counted(self._service, self._pending_service_us)
        return self._service

    def merge(self, other: ClassStats) -> None:
        self.count += other.count
        self.intended.add(other.intended)
        self.service.add(other.service)


@dataclass
class Window:
    """One second `t` (whole seconds since the run's t=0); see the module docstring for the merge rule."""

    t: int
    offered: int = 0
    sent: int = 0
    late: int = 0
    dropped: int = 0
    starved: int = 0  # of late + dropped: arrivals that found every user of the pool busy when they fell due
    classes: dict[str, ClassStats] = field(default_factory=dict)
    codes: Counter[str] = field(default_factory=Counter)
    replicas: Counter[str] = field(default_factory=Counter)
    amount_fen: int = 0
    plans_followed: int = 0
    cpu_pct: float = 0.0
    lag_ms: float = 0.0
    workers: int = 0

    def record(
        self,
        outcome: OutcomeClass,
        *,
        intended_us: float,
        service_us: float,
        code: str = "",
        replica: str = "",
        amount_fen: int = 0,
    ) -> None:
        """One completed attempt; `amount_fen` only for a success that repaid money."""
        stats = self.classes.get(outcome)
        if stats is None:
            stats = self.classes[outcome] = ClassStats()
        stats.add(intended_us, service_us)
        if code:
            self.codes[code] += 1
        if replica:
            self.replicas[replica] += 1
        self.amount_fen += amount_fen

    def merge(self, other: Window) -> None:
        if other.t != self.t:
            raise ValueError(f"cannot merge second {other.t} into second {self.t}")
        self.offered += other.offered
        self.sent += other.sent
        self.late += other.late
        self.dropped += other.dropped
        self.starved += other.starved
        for name, stats in other.classes.items():
            mine = self.classes.get(name)
            if mine is None:
                self.classes[name] = mine = ClassStats()
            mine.merge(stats)
        self.codes.update(other.codes)
        self.replicas.update(other.replicas)
        self.amount_fen += other.amount_fen
        self.plans_followed += other.plans_followed
        self.cpu_pct = max(self.cpu_pct, other.cpu_pct)
        self.lag_ms = max(self.lag_ms, other.lag_ms)
        self.workers += other.workers

    def to_json(self) -> dict[str, Any]:
        """The windows.jsonl line (internals §5); classes in the canonical order, absent ones left out."""
        return {
            "t": self.t,
            "offered": self.offered,
            "sent": self.sent,
            "late": self.late,
            "dropped": self.dropped,
            "starved": self.starved,
            "classes": {
                name: {
                    "count": self.classes[name].count,
                    "intended": self.classes[name].intended.encode().decode("ascii"),
                    "service": self.classes[name].service.encode().decode("ascii"),
                }
                for name in OUTCOME_CLASSES
                if name in self.classes
            },
            "codes": dict(sorted(self.codes.items())),
            "replicas": dict(sorted(self.replicas.items())),
            "amount_fen": self.amount_fen,
            "plans_followed": self.plans_followed,
            "gen": {"cpu_pct": round(self.cpu_pct, 1), "lag_ms": round(self.lag_ms, 2), "workers": self.workers},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Window:
        gen = data.get("gen", {})
        return cls(
            t=int(data["t"]),
            offered=int(data.get("offered", 0)),
            sent=int(data.get("sent", 0)),
            late=int(data.get("late", 0)),
            dropped=int(data.get("dropped", 0)),
            starved=int(data.get("starved", 0)),
            classes={
                name: ClassStats(
                    int(stats["count"]), decode_histogram(stats["intended"]), decode_histogram(stats["service"])
                )
                for name, stats in data.get("classes", {}).items()
            },
            codes=Counter({str(k): int(v) for k, v in data.get("codes", {}).items()}),
            replicas=Counter({str(k): int(v) for k, v in data.get("replicas", {}).items()}),
            amount_fen=int(data.get("amount_fen", 0)),
            plans_followed=int(data.get("plans_followed", 0)),
            cpu_pct=float(gen.get("cpu_pct", 0.0)),
            lag_ms=float(gen.get("lag_ms", 0.0)),
            workers=int(gen.get("workers", 0)),
        )


class WindowBook:
    """Open windows by second; `take` hands over (and forgets) the ones a caller is done with."""

    def __init__(self) -> None:
        self.windows: dict[int, Window] = {}

    def at(self, t: int) -> Window:
        window = self.windows.get(t)
        if window is None:
            window = self.windows[t] = Window(t)
        return window

    def merge(self, window: Window) -> None:
        """Add `window` into this book's second (the argument itself is never kept or changed)."""
        self.at(window.t).merge(window)

    def take(self, before_t: int | None = None) -> list[Window]:
        """Remove and return, in time order, every window with t < `before_t` (all of them when None)."""
        keys = sorted(t for t in self.windows if before_t is None or t < before_t)
        return [self.windows.pop(t) for t in keys]


def merge_all(windows: list[Window]) -> list[Window]:
    """Windows from any number of processes, merged per second, in time order."""
    book = WindowBook()
    for window in windows:
        book.merge(window)
    return book.take()
