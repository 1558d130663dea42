"""Which replicas may take traffic, and which one should take the next request.

Pure bookkeeping, no I/O: the router feeds it check results (active probes of `/readyz`, passive failures
of proxied requests, the supervisor's news that a process died) and asks it where to send a request. Keeping
the fall/rise state machine and the selection policy free of sockets and clocks is what lets them be tested
exhaustively and lets the router stay a thin adapter.

A replica starts *unknown*: its first check decides, so a freshly started cluster does not wait `rise`
intervals before it takes traffic. After that it takes `fall` consecutive failures to go down and `rise`
consecutive successes to come back (HAProxy's semantics).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from enum import StrEnum


class Mode(StrEnum):
    """How traffic is spread over the healthy replicas."""

    ACTIVE_STANDBY = "active-standby"  # the first healthy replica in priority order takes everything
    ACTIVE_ACTIVE = "active-active"  # the healthy replica with the fewest requests in flight


class Transition(StrEnum):
    """A change of a replica's health, reported once when it happens."""

    UP = "up"
    DOWN = "down"


@dataclass(slots=True)
class HealthState:
    """Fall/rise hysteresis for one replica; `up is None` until the first check result arrives."""

    fall: int
    rise: int
    up: bool | None = None
    ok_streak: int = 0
    fail_streak: int = 0

    def __post_init__(self) -> None:
        if self.fall < 1:
            raise ValueError(f"'fall' must be >= 1 (got {self.fall})")
        if self.rise < 1:
            raise ValueError(f"'rise' must be >= 1 (got {self.rise})")

    def record(self, ok: bool) -> Transition | None:
        """Count one check result; return the transition it caused, if any."""
        if ok:
            self.ok_streak += 1
            self.fail_streak = 0
            if self.up is None or (not self.up and self.ok_streak >= self.rise):
                self.up = True
                return Transition.UP
            return None
        self.fail_streak += 1
        self.ok_streak = 0
        if self.up is None or (self.up and self.fail_streak >= self.fall):
            was_up = self.up
            self.up = False
            return Transition.DOWN if was_up else None
        return None

    def force_down(self) -> Transition | None:
        """Take the replica out at once: its process is known to be gone, no need to wait `fall` checks."""
        was_up = self.up
        self.up = False
        self.ok_streak = 0
        self.fail_streak = self.fall
        return Transition.DOWN if was_up else None


@dataclass(slots=True)
class Member:
    """One replica as the selection policy sees it."""

    name: str
    health: HealthState
    in_flight: int = 0

    @property
    def up(self) -> bool:
        return self.health.up is True


@dataclass(slots=True)
class ReplicaPool:
    """The replicas in priority order (`r1` first) and the policy that picks one for each request."""

    mode: Mode
    members: list[Member]
    _rotation: int = field(default=0, repr=False)

    @classmethod
    def of(cls, names: list[str], mode: Mode, fall: int, rise: int) -> ReplicaPool:
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"replica names must be unique and non-empty (got {names})")
        return cls(mode, [Member(n, HealthState(fall, rise)) for n in names])

    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(name)

    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def healthy(self) -> list[str]:
        return [m.name for m in self.members if m.up]

    def primary(self) -> str | None:
        """The replica taking traffic in active-standby (first healthy by priority); None when none is."""
        return next((m.name for m in self.members if m.up), None)

    def traffic_target(self) -> str:
        """What receives traffic, as one comparable label: a change of it is a failover.

        Active-standby: the primary's name. Active-active: the healthy names joined with '+'.
        `none` when no replica is healthy.
        """
        if self.mode is Mode.ACTIVE_STANDBY:
            return self.primary() or "none"
        return "+".join(self.healthy()) or "none"

    def role(self, name: str) -> str:
        """docs/gateway.md role: `active` in active-active; `primary` or `standby` in active-standby."""
        if self.mode is Mode.ACTIVE_ACTIVE:
            return "active"
        return "primary" if name == self.primary() else "standby"

    def select(self, exclude: frozenset[str] | set[str] = frozenset()) -> str | None:
        """The replica for the next attempt, skipping those already tried for this request."""
        return self._pick([m for m in self.members if m.up and m.name not in exclude])

    def select_in_panic(self, running: Collection[str], exclude: frozenset[str] | set[str] = frozenset()) -> str | None:
        """When no replica is healthy, pick among those whose process runs, health ignored.

        Envoy's panic mode: if every replica fails its checks at once, the checks are more likely wrong (a
        starved host answering probes late) than every replica dead, so traffic goes to the running ones
        rather than nowhere. Used only while `healthy()` is empty.
        """
        return self._pick([m for m in self.members if m.name in running and m.name not in exclude])

    def _pick(self, candidates: list[Member]) -> str | None:
        if not candidates:
            return None
        if self.mode is Mode.ACTIVE_STANDBY:
            return candidates[0].name
        # Least in flight; ties rotate so an idle cluster still spreads its requests.
        self._rotation = (self._rotation + 1) % len(self.members)
        lowest = min(m.in_flight for m in candidates)
        tied = [m for m in candidates if m.in_flight == lowest]
        return tied[self._rotation % len(tied)].name
