"""The cluster's record of what happened: `cluster-events.jsonl` (docs/internals.md §3) and router metrics.

Each event is written and flushed as one JSON line the moment it happens, with three clocks: `unix` to line
it up with the load generator's history, `mono` to measure detection and failover times without wall-clock
jumps, `wall` for people. The same events are counted in Prometheus so a dashboard sees what the file says.
The registry is per router instance (no process-global state), which keeps tests independent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Self

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class EventKind(StrEnum):
    PROCESS_STARTED = "process_started"
    PROCESS_DIED = "process_died"
    CHECK_FAILED = "check_failed"
    REPLICA_DOWN = "replica_down"
    REPLICA_UP = "replica_up"
    FAILOVER = "failover"
    FAULT_STARTED = "fault_started"
    FAULT_ENDED = "fault_ended"
    KILLED = "killed"
    PAUSED = "paused"
    RESUMED = "resumed"
    RESTARTED = "restarted"
    RESTART_FAILED = "restart_failed"


@dataclass(frozen=True, slots=True)
class Event:
    unix: float
    mono: float
    wall: str
    kind: EventKind
    replica: str | None
    detail: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "unix": self.unix,
                "mono": self.mono,
                "wall": self.wall,
                "kind": str(self.kind),
                "replica": self.replica,
                "detail": self.detail,
            },
            ensure_ascii=False,
        )


class RouterMetrics:
    """The router's Prometheus series, on a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "surge_router_events", "Cluster events by kind", ["kind", "replica"], registry=self.registry
        )
        self.requests = Counter(
            "surge_router_requests",
            "Client requests answered by the router, by replica that answered and status",
            ["replica", "status"],
            registry=self.registry,
        )
        self.attempt_failures = Counter(
            "surge_router_attempt_failures",
            "Forwarding attempts that failed before an answer, by replica and reason",
            ["replica", "reason"],
            registry=self.registry,
        )
        self.retries = Counter(
            "surge_router_retries", "Attempts retried on another replica", ["reason"], registry=self.registry
        )
        self.retry_budget_exhausted = Counter(
            "surge_router_retry_budget_exhausted",
            "Failed attempts not retried because the retry budget was spent",
            registry=self.registry,
        )
        self.panic_routed = Counter(
            "surge_router_panic_routed",
            "Attempts sent to a replica that failed its checks because none passed them (panic mode)",
            registry=self.registry,
        )
        self.rejected = Counter(
            "surge_router_rejected",
            "Requests answered by the router itself (rate limits, no healthy replica)",
            ["code"],
            registry=self.registry,
        )
        self.replica_up = Gauge(
            "surge_router_replica_up", "1 when the replica takes traffic", ["replica"], registry=self.registry
        )
        self.in_flight = Gauge(
            "surge_router_in_flight", "Requests in flight per replica", ["replica"], registry=self.registry
        )
        self._answered: dict[tuple[str, int], Any] = {}  # label children, cached: this is the hot path
        self.latency = Histogram(
            "surge_router_request_seconds",
            "Time from request received to response sent, retries included",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )

    def count_answer(self, replica: str, status: int) -> None:
        child = self._answered.get((replica, status))
        if child is None:
            child = self._answered[(replica, status)] = self.requests.labels(replica=replica, status=str(status))
        child.inc()

    def watch_in_flight(self, replica: str, read: Callable[[], float]) -> None:
        """The gauge reads the router's own counter at scrape time instead of being updated per request."""
        self.in_flight.labels(replica=replica).set_function(read)


class EventLog:
    """Appends events to the JSON-lines file (flushed per line, so a crash loses none) and counts them."""

    def __init__(self, path: Path, metrics: RouterMetrics) -> None:
        self.path = path
        self.metrics = metrics
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def emit(self, kind: EventKind, replica: str | None = None, detail: str = "") -> Event:
        event = Event(
            unix=time.time(),
            mono=time.monotonic(),
            wall=datetime.now(UTC).astimezone().isoformat(timespec="milliseconds"),
            kind=kind,
            replica=replica,
            detail=detail,
        )
        self._file.write(event.to_json() + "\n")
        self._file.flush()
        self.metrics.events.labels(kind=str(kind), replica=replica or "").inc()
        return event

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
