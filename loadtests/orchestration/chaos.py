"""Plays a scenario's fault schedule against the cluster's admin API and logs every step.

A fault with a duration is undone by the player itself (a killed replica is restarted, a paused one resumed);
injected faults (latency, errors, channel_outage, lose_response) carry their duration to the gateway, which
expires them on its own clock, so a player that dies cannot leave a fault behind for ever. A run stopped before
a pause's planned end calls `undo()`: a SIGSTOPped replica would otherwise hold the shared ledger's lock and
ignore the SIGTERM that stops the cluster.

Events (source `chaos` in events.csv): `fault_injected` when the admin API accepted a fault, `fault_failed` when
it refused it (an unknown channel: 400, an unknown replica: 404) or could not be reached — the run then exits 3,
since the scenario it was asked for was not played — and `fault_cleared` when the player undid a process fault (the
cluster logs `fault_ended` itself when it expires an injected fault).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from runfolder.events import FAULT_CLEARED, FAULT_FAILED, FAULT_INJECTED

PROCESS_ACTIONS = {"kill", "pause", "resume", "restart"}
UNDO = {"kill": "restart", "pause": "resume"}


class FaultLike(Protocol):
    """What the player needs of a scenario fault (loadtests.scenario.parts.Fault satisfies it)."""

    @property
    def at_s(self) -> float: ...
    @property
    def action(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def duration_s(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class ChaosEvent:
    """One line of events.csv with source `chaos`."""

    unix: float
    kind: str
    target: str
    detail: str


@dataclass
class ChaosPlayer:
    """Fires each fault at `start_unix + at_s`; `events` keeps what happened, failures included."""

    admin_url: str
    token: str
    faults: Sequence[FaultLike]
    start_unix: float
    on_event: Callable[[ChaosEvent], None] | None = None
    events: list[ChaosEvent] = field(default_factory=list)
    _names: dict[int, str] = field(default_factory=dict)  # fault → replica its first step hit
    _failed: set[int] = field(default_factory=set)  # faults whose injection failed: nothing to undo
    _paused: dict[int, FaultLike] = field(default_factory=dict)  # pause faults injected and not yet resumed

    async def play(self) -> None:
        steps = sorted(self._steps(), key=lambda step: step[0])
        headers = {"Authorization": f"Bearer {self.token}"}
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            for at_s, action, target, fault in steps:
                delay = self.start_unix + at_s - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._apply(session, action, target, fault)

    async def undo(self) -> None:
        """Resume every replica this player paused and has not resumed yet (called after `play` is cancelled).

        A killed replica is left down: the cluster is being stopped, and a restart would only delay that.
        """
        if not self._paused:
            return
        headers = {"Authorization": f"Bearer {self.token}"}
        async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=5)) as session:
            for fault in list(self._paused.values()):
                await self._apply(session, "resume", fault.target, fault)

    def _steps(self) -> list[tuple[float, str, str, FaultLike]]:
        steps: list[tuple[float, str, str, FaultLike]] = []
        for fault in self.faults:
            steps.append((fault.at_s, fault.action, fault.target, fault))
            undo = UNDO.get(fault.action)
            if undo and fault.duration_s:
                steps.append((fault.at_s + fault.duration_s, undo, fault.target, fault))
        return steps

    async def _apply(self, session: aiohttp.ClientSession, action: str, target: str, fault: FaultLike) -> None:
        undo = action != fault.action
        if undo and id(fault) in self._failed:
            return
        try:
            if action in PROCESS_ACTIONS:
                name = self._names.get(id(fault)) or await self._resolve(session, target)
                self._names[id(fault)] = name
                url = f"{self.admin_url}/admin/replicas/{name}/{action}"
                async with session.post(url) as response:
                    text = await response.text()
                    ok = response.status < 300
                if ok:
                    if action == "pause":
                        self._paused[id(fault)] = fault
                    elif action == "resume":
                        self._paused.pop(id(fault), None)
                    self._log(FAULT_CLEARED if undo else FAULT_INJECTED, name, action)
                else:
                    self._failed.add(id(fault))
                    self._log(FAULT_FAILED, name, f"{action} failed: HTTP {response.status} {text[:200]}")
            else:
                body = _fault_body(action, target, fault)
                async with session.post(f"{self.admin_url}/admin/faults", json=body) as response:
                    text = await response.text()
                    ok = response.status < 300
                if not ok:
                    self._failed.add(id(fault))
                    self._log(FAULT_FAILED, target, f"{action} failed: HTTP {response.status} {text[:200]}")
                    return
                self._log(FAULT_INJECTED, target, f"{action} for {fault.duration_s}s")
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._failed.add(id(fault))
            self._log(FAULT_FAILED, target, f"{action}: {type(exc).__name__}: {exc}")

    async def _resolve(self, session: aiohttp.ClientSession, target: str) -> str:
        """Turn `primary` into the replica taking traffic now, so the undo step hits the same process."""
        if target != "primary":
            return target
        async with session.get(f"{self.admin_url}/admin/replicas") as response:
            replicas: list[dict[str, Any]] = (await response.json())["replicas"]
        for replica in replicas:
            if replica.get("role") in {"primary", "active"} and replica.get("state") == "up":
                return str(replica["name"])
        return "primary"

    def _log(self, kind: str, target: str, detail: str) -> None:
        event = ChaosEvent(time.time(), kind, target, detail)
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)


def _fault_body(action: str, target: str, fault: FaultLike) -> dict[str, Any]:
    """The admin API body of an injected fault; a channel outage targets a channel, the rest a replica."""
    body: dict[str, Any] = {"kind": action, "duration_s": fault.duration_s or 0.0}
    for name in ("ratio", "latency_ms", "status", "channel"):
        value = getattr(fault, name, None)
        if value is not None:
            body[name] = value
    body.setdefault("ratio", 1.0)
    if action == "channel_outage":
        body["channel"] = getattr(fault, "channel", None) or target
    elif target not in {"", "all"}:
        body["target"] = target
    return body
