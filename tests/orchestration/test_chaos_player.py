"""The fault player against a scripted admin API: timing, `primary` resolution, undo steps, failures logged."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from loadtests.orchestration.chaos import ChaosPlayer
from loadtests.scenario.parts import Fault

TOKEN = "t0ken"


async def admin_server(calls: list[tuple[float, str, dict[str, Any] | None]]) -> TestServer:
    async def replicas(request: web.Request) -> web.Response:
        calls.append((time.time(), "GET replicas", None))
        return web.json_response(
            {"replicas": [{"name": "r1", "state": "down", "role": "standby"},
                          {"name": "r2", "state": "up", "role": "primary"}]}
        )  # fmt: skip

    async def action(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"code": "UNAUTHORIZED"}, status=401)
        calls.append((time.time(), f"{request.match_info['name']}/{request.match_info['action']}", None))
        if request.match_info["name"] not in {"r1", "r2", "r3"}:
            return web.json_response({"code": "NOT_FOUND"}, status=404)
        return web.json_response({"ok": True})

    async def faults(request: web.Request) -> web.Response:
        body = await request.json()
        calls.append((time.time(), "faults", body))
        if body.get("kind") == "errors":
            return web.json_response({"code": "VALIDATION_ERROR"}, status=400)
        return web.json_response({"ok": True}, status=201)

    app = web.Application()
    app.router.add_get("/admin/replicas", replicas)
    app.router.add_post("/admin/replicas/{name}/{action}", action)
    app.router.add_post("/admin/faults", faults)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_plays_the_schedule_on_time_and_undoes_process_faults() -> None:
    calls: list[tuple[float, str, dict[str, Any] | None]] = []
    server = await admin_server(calls)
    try:
        # A 1 s lead (the replicas are listed first) and a 1.5 s kill: room for a loop starved at 4x CPU contention.
        start = time.time() + 1.0
        faults = [
            Fault(at_s=0.0, action="kill", target="primary", duration_s=1.5),
            Fault(at_s=0.5, action="latency", target="r3", duration_s=5, ratio=0.5, latency_ms=300),
            Fault(at_s=0.75, action="channel_outage", target="ICBC", duration_s=2),
        ]
        player = ChaosPlayer(str(server.make_url("")).rstrip("/"), TOKEN, faults, start)
        await player.play()
    finally:
        await server.close()
    kinds = [name for _, name, _ in calls]
    assert kinds == ["GET replicas", "r2/kill", "faults", "faults", "r2/restart"]
    kill_at = calls[1][0]
    restart_at = calls[4][0]
    # Never early; late by less than the gap to the next step (0.5 s: a loop starved at 4x CPU contention). The
    # restart is due 1.5 s after the kill's scheduled time (not after its arrival, which may itself be late).
    assert 0 <= kill_at - start < 0.5
    assert 1.5 <= restart_at - start < 1.5 + 0.5
    assert calls[2][2] == {
        "kind": "latency",
        "duration_s": 5.0,
        "ratio": 0.5,
        "latency_ms": 300,
        "target": "r3",
    }
    assert calls[3][2] == {"kind": "channel_outage", "duration_s": 2.0, "ratio": 1.0, "channel": "ICBC"}
    assert [(e.kind, e.target) for e in player.events] == [
        ("fault_injected", "r2"),
        ("fault_injected", "r3"),
        ("fault_injected", "ICBC"),
        ("fault_cleared", "r2"),
    ]


async def test_a_refused_injection_is_a_failed_fault() -> None:
    """An unknown replica (404 from the admin API) is `fault_failed`, never `fault_injected`."""
    calls: list[tuple[float, str, dict[str, Any] | None]] = []
    server = await admin_server(calls)
    try:
        faults = [
            Fault(at_s=0, action="errors", target="r1", ratio=0.1, duration_s=1),
            Fault(at_s=0, action="kill", target="r9", duration_s=0.1),
        ]
        player = ChaosPlayer(str(server.make_url("")).rstrip("/"), TOKEN, faults, time.time())
        await player.play()
    finally:
        await server.close()
    assert [(e.kind, e.target) for e in player.events] == [
        ("fault_failed", "r1"),
        ("fault_failed", "r9"),
    ]
    assert "r9/restart" not in [name for _, name, _ in calls]  # nothing to undo


async def test_a_refused_fault_is_logged_not_raised() -> None:
    calls: list[tuple[float, str, dict[str, Any] | None]] = []
    server = await admin_server(calls)
    try:
        player = ChaosPlayer(
            str(server.make_url("")).rstrip("/"),
            TOKEN,
            [Fault(at_s=0, action="errors", ratio=0.1)],
            time.time(),
        )
        await player.play()
    finally:
        await server.close()
    assert len(player.events) == 1
    assert "failed: HTTP 400" in player.events[0].detail


async def test_unreachable_admin_api_is_logged() -> None:
    player = ChaosPlayer("http://127.0.0.1:9", TOKEN, [Fault(at_s=0, action="pause", target="r1")], time.time())
    await player.play()
    assert player.events[0].kind == "fault_failed"
