"""The cluster's own robustness: private files, a restart whose old port was taken meanwhile, a fencing task that
survives a failed restart, an admin restart that times out."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from mock_gateway.cluster import supervisor as supervisor_module
from mock_gateway.cluster.admin_api import AdminApi
from mock_gateway.cluster.events import EventKind
from mock_gateway.cluster.health import Mode, ReplicaPool
from mock_gateway.cluster.serve import write_private_json
from mock_gateway.cluster.supervisor import Supervisor
from mock_gateway.problems import problem_middleware
from tests.mock_gateway.cluster.conftest import StartCluster
from tests.mock_gateway.cluster.test_failover import admin
from tests.mock_gateway.cluster.traffic import Payment, pay, repayment


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_state_dir_is_0700_and_files_holding_secrets_are_0600(start_cluster: StartCluster) -> None:
    """Not the umask's 0755, and no window in which the token file is readable before a chmod."""
    cluster = start_cluster(replicas=1)
    assert mode_of(cluster.state_dir) == 0o700
    for name in ("cluster.json", "replica-config.json", "cluster-config.json"):
        assert mode_of(cluster.state_dir / name) == 0o600, name


def test_private_json_is_created_0600_not_chmodded_later(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With chmod disabled the file must still be 0600: its mode is set at creation (no window for a reader)."""
    monkeypatch.setattr(os, "chmod", lambda *args, **kwargs: None)
    monkeypatch.setattr(Path, "chmod", lambda *args, **kwargs: None)
    old = os.umask(0o022)
    try:
        write_private_json(tmp_path / "cluster.json", {"admin_token": "t"})
    finally:
        os.umask(old)
    assert mode_of(tmp_path / "cluster.json") == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["cluster.json"], "no temporary file is left behind"


async def test_a_restart_whose_old_port_was_taken_moves_to_a_new_port(start_cluster: StartCluster) -> None:
    """A port picked free and bound later can be taken meanwhile: the supervisor binds and hands the socket over,
    and a restart whose old port is taken falls back to a new one."""
    cluster = start_cluster(replicas=1)
    old_port = cluster.refresh()["replicas"][0]["port"]
    assert (await admin(cluster, "POST", "/admin/replicas/r1/kill"))[0] == 200
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the dead replica's connections linger
    try:
        deadline = time.monotonic() + 10
        while True:  # the killed replica's socket closes when its process is reaped
            try:
                squatter.bind(("127.0.0.1", old_port))
                break
            except OSError:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        squatter.listen()
        status, body = await admin(cluster, "POST", "/admin/replicas/r1/restart")
        assert status == 200, body
        new_port = body["port"]
        assert new_port != old_port
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            deadline = time.monotonic() + 15
            while (await admin(cluster, "GET", "/admin/replicas"))[1]["replicas"][0]["state"] != "up":
                assert time.monotonic() < deadline, "the restarted replica never came up"
                await asyncio.sleep(0.1)
            result = await pay(session, cluster.url, Payment("k-moved", repayment("u-moved", "c-moved", 100)))
        assert result.status == 201
        assert cluster.refresh()["replicas"][0]["port"] == new_port
    finally:
        squatter.close()


async def test_fencing_survives_a_restart_that_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One failing restart must not end the fencing task, which guards every replica."""
    events: list[tuple[EventKind, str, str]] = []
    supervisor = Supervisor(
        config_path=tmp_path / "c.json",
        admin_token="t",
        replicas=["r1"],
        log_dir=tmp_path,
        on_event=lambda kind, name, detail: events.append((kind, name, detail)),
        on_exit=lambda name: None,
    )
    monkeypatch.setattr(supervisor_module, "_stopped", lambda rep: True)

    async def broken_restart(name: str, timeout_s: float = 5.0) -> Any:
        raise TimeoutError("the old process did not exit")

    monkeypatch.setattr(supervisor, "restart", broken_restart)
    fencing = asyncio.ensure_future(
        supervisor.fence_stopped(lambda name: False, interval_s=0.01, after_s=0.0, on_fenced=lambda name: None)
    )
    try:
        for _ in range(500):
            if sum(kind is EventKind.RESTART_FAILED for kind, _, _ in events) >= 2:
                break
            await asyncio.sleep(0.01)
        assert not fencing.done(), fencing.exception() if fencing.done() else None
        assert sum(kind is EventKind.RESTART_FAILED for kind, _, _ in events) >= 2
    finally:
        fencing.cancel()
        await asyncio.gather(fencing, return_exceptions=True)
        supervisor.close_listeners()


async def test_an_admin_restart_that_times_out_is_a_problem_not_a_500() -> None:
    """The admin `/restart` timeout is a problem+json answer, not aiohttp's text/plain 500."""

    async def slow_restart(name: str, timeout_s: float = 5.0) -> Any:
        raise TimeoutError

    router = SimpleNamespace(pool=ReplicaPool.of(["r1"], Mode.ACTIVE_STANDBY, 2, 2), events=None)
    supervisor = SimpleNamespace(replicas={"r1": object()}, restart=slow_restart)
    api = AdminApi(router, supervisor, "tok", frozenset({"ICBC"}), lambda: None)  # type: ignore[arg-type]
    app = web.Application(middlewares=[problem_middleware("router", max_body_bytes=1024)])
    app.router.add_routes(api.routes())
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        response = await client.post("/admin/replicas/r1/restart", headers={"Authorization": "Bearer tok"})
        assert response.status == 503
        assert response.content_type == "application/problem+json"
        assert (await response.json(content_type=None))["code"] == "RESTART_TIMED_OUT"
    finally:
        await client.close()
