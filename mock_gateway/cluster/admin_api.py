"""`/admin/` on the router: list, kill, pause, resume, restart replicas; fan faults out to them (docs/gateway.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from mock_gateway.admin import require_admin
from mock_gateway.cluster.events import EventKind
from mock_gateway.cluster.router import Router
from mock_gateway.cluster.supervisor import Supervisor
from mock_gateway.errors import InvalidJson, NotFound, ReplicaNotRunning, RestartTimedOut
from mock_gateway.replica.faults import parse_spec
from mock_gateway.validation import decode_json, read_body

ADMIN_TIMEOUT_S = 2.0
ADMIN_MAX_BODY_BYTES = 16_384
ACTIONS = ("kill", "pause", "resume", "restart")


class AdminApi:
    """`/admin/` on the router: list, kill, pause, resume, restart replicas; fan faults out to them."""

    def __init__(
        self,
        router: Router,
        supervisor: Supervisor,
        token: str,
        channels: frozenset[str],
        on_change: Callable[[], None],
    ) -> None:
        self.router = router
        self.supervisor = supervisor
        self._token = token
        self._channels = channels
        self._on_change = on_change
        self._fault_timers: dict[int, tuple[str, str, asyncio.TimerHandle]] = {}  # seq → replica, detail
        self._fault_seq = 0

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/admin/replicas", self.list_replicas),
            web.post("/admin/replicas/{name}/{action}", self.replica_action),
            web.post("/admin/faults", self.add_fault),
            web.delete("/admin/faults", self.clear_faults),
            web.get("/admin/faults", self.list_faults),
        ]

    def _authorize(self, request: web.Request) -> None:
        require_admin(request, self._token)

    def _resolve(self, name: str) -> str:
        if name == "primary":
            primary = self.router.pool.primary()
            if primary is None:
                raise NotFound("no replica is taking traffic, so there is no primary")
            return primary
        if name not in self.supervisor.replicas:
            raise NotFound(f"no replica named {name!r} (have {', '.join(self.supervisor.replicas)})")
        return name

    def describe(self, name: str) -> dict[str, Any]:
        rep = self.supervisor.get(name)
        member = self.router.pool.member(name)
        state = "paused" if rep.paused else "up" if member.up and rep.alive else "down"
        return {
            "name": name,
            "port": rep.port,
            "pid": rep.pid,
            "state": state,
            "role": self.router.pool.role(name),
            "in_flight": member.in_flight,
        }

    async def list_replicas(self, request: web.Request) -> web.Response:
        self._authorize(request)
        return web.json_response({"replicas": [self.describe(n) for n in self.supervisor.replicas]})

    async def replica_action(self, request: web.Request) -> web.Response:
        self._authorize(request)
        action = request.match_info["action"]
        if action not in ACTIONS:
            raise NotFound(f"unknown action {action!r} (one of {', '.join(ACTIONS)})")
        name = self._resolve(request.match_info["name"])
        try:
            if action == "kill":
                await self.supervisor.kill(name)
            elif action == "pause":
                self.supervisor.pause(name)
            elif action == "resume":
                self.supervisor.resume(name)
            else:
                await self.supervisor.restart(name)
                self._on_change()
        except ProcessLookupError as exc:
            raise ReplicaNotRunning(str(exc)) from None
        except TimeoutError:
            raise RestartTimedOut(f"replica {name}'s process did not exit after SIGKILL; try again") from None
        return web.json_response({"action": action, **self.describe(name)})

    async def _fan_out(self, method: str, names: list[str], body: dict[str, Any] | None) -> dict[str, tuple[int, Any]]:
        """Send one admin call to each named replica; a replica that does not answer counts as 503."""
        headers = {"Authorization": f"Bearer {self._token}"}
        timeout = aiohttp.ClientTimeout(total=ADMIN_TIMEOUT_S)

        async def one(session: aiohttp.ClientSession, name: str) -> tuple[int, Any]:
            url = f"http://127.0.0.1:{self.supervisor.get(name).port}/admin/faults"
            try:
                async with session.request(method, url, json=body, headers=headers) as response:
                    raw = await response.read()
                    try:
                        return response.status, decode_json(raw) if raw else None
                    except InvalidJson:
                        return response.status, raw.decode("utf-8", "replace")
            except (aiohttp.ClientError, TimeoutError) as exc:
                return 503, {"detail": f"replica {name} did not answer: {type(exc).__name__}"}

        async with aiohttp.ClientSession(timeout=timeout) as session:
            results = await asyncio.gather(*(one(session, n) for n in names))
        return dict(zip(names, results, strict=True))

    async def add_fault(self, request: web.Request) -> web.Response:
        self._authorize(request)
        spec = parse_spec(decode_json(await read_body(request, ADMIN_MAX_BODY_BYTES)), self._channels)
        body = spec.model_dump(mode="json", exclude={"target"}, exclude_unset=True)
        target = spec.target
        names = list(self.supervisor.replicas) if target in (None, "", "all") else [self._resolve(target)]
        results = await self._fan_out("POST", names, body)
        accepted = [n for n, (status, _) in results.items() if status < 300]
        for name in accepted:
            self._fault_started(name, body)
        refused = {n: r for n, r in results.items() if r[0] >= 300}
        status = 200 if accepted else max(s for s, _ in refused.values())
        return web.json_response(
            {"applied": accepted, "results": {n: {"status": s, "body": b} for n, (s, b) in results.items()}},
            status=status,
        )

    def _fault_started(self, name: str, body: dict[str, Any]) -> None:
        detail = " ".join(f"{k}={v}" for k, v in sorted(body.items()))
        self.router.events.emit(EventKind.FAULT_STARTED, name, detail)
        self._fault_seq += 1
        seq = self._fault_seq
        handle = asyncio.get_running_loop().call_later(body["duration_s"], self._fault_ended, seq, "expired")
        self._fault_timers[seq] = (name, detail, handle)

    def _fault_ended(self, seq: int, why: str) -> None:
        name, detail, _ = self._fault_timers.pop(seq)
        self.router.events.emit(EventKind.FAULT_ENDED, name, f"{why}: {detail}")

    async def clear_faults(self, request: web.Request) -> web.Response:
        self._authorize(request)
        results = await self._fan_out("DELETE", list(self.supervisor.replicas), None)
        for seq, (_, _, handle) in list(self._fault_timers.items()):
            handle.cancel()
            self._fault_ended(seq, "cleared")
        return web.json_response({"results": {n: {"status": s, "body": b} for n, (s, b) in results.items()}})

    async def list_faults(self, request: web.Request) -> web.Response:
        self._authorize(request)
        results = await self._fan_out("GET", list(self.supervisor.replicas), None)
        return web.json_response({"replicas": {n: {"status": s, "body": b} for n, (s, b) in results.items()}})
