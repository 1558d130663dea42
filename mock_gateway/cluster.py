"""The gateway cluster: a router process that is also the supervisor of N replica processes.

    python -m mock_gateway.cluster --config F --port P --replicas N --state-dir D [--host H] [--allow-public-bind]

One process owns both jobs because the router must learn of a death the instant it happens (the supervisor
sees the exit through a pidfd) and because killing, pausing and restarting replicas is part of the router's
admin API (CONTRACT §3). It writes `cluster.json` once every replica answered its first health check, and
`cluster-events.jsonl` as things happen (docs/internals.md §3).

`ClusterProcess` is the handle other code uses (`surge run`, tests, benchmarks): it starts this module as a
subprocess that dies with its caller, waits until it is ready and stops it cleanly.

Exit codes: 0 stopped by SIGTERM/SIGINT · 2 bad configuration or a public bind without
`--allow-public-bind` (nothing started) · 3 the cluster could not start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp import web

from mock_gateway.admin import load_admin_token, require_admin
from mock_gateway.config import ConfigError, GatewayConfig, load_config
from mock_gateway.errors import GatewayError, InvalidJson, NotFound
from mock_gateway.events import EventKind, EventLog, RouterMetrics
from mock_gateway.faults import parse_spec
from mock_gateway.net import is_loopback_host
from mock_gateway.router import Router, RouterSettings, create_router_app
from mock_gateway.supervisor import Supervisor, child_env, guarded_argv

STATE_FILE = "cluster.json"
EVENTS_FILE = "cluster-events.jsonl"
REPLICA_CONFIG_FILE = "replica-config.json"
ADMIN_TIMEOUT_S = 2.0
SHUTDOWN_GRACE_S = 3.0
ACTIONS = ("kill", "pause", "resume", "restart")


class ClusterUsageError(Exception):
    """Exit 2: the request cannot be served as asked and nothing was started."""


class ClusterStartError(Exception):
    """Exit 3: the cluster itself failed to come up."""


class ReplicaNotRunning(GatewayError):
    status = 409
    code = "REPLICA_NOT_RUNNING"
    title = "The replica's process is not running"


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now; the tiny race until the replica binds it is acceptable on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def resolve_for_replicas(config: GatewayConfig, state_dir: Path) -> dict[str, Any]:
    """The one config every replica reads: the same anchored clock and ledger (the token goes by env)."""
    data = config.model_dump(mode="json")
    now = time.time()
    start = config.clock.start or datetime.fromtimestamp(now, UTC).astimezone()
    data["clock"]["start"] = start.isoformat()
    data["clock"]["anchor_unix"] = config.clock.anchor_unix or now
    ledger = config.ledger.path
    data["ledger"]["path"] = str(ledger if ledger.is_absolute() else (state_dir / ledger).resolve())
    data["admin"]["token"] = ""
    data["server"]["host"] = "127.0.0.1"
    data["server"]["allow_public_bind"] = False
    return data


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    tmp.chmod(0o600)  # cluster.json holds the admin token
    tmp.replace(path)


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
                self.supervisor.kill(name)
            elif action == "pause":
                self.supervisor.pause(name)
            elif action == "resume":
                self.supervisor.resume(name)
            else:
                await self.supervisor.restart(name)
                self._on_change()
        except ProcessLookupError as exc:
            raise ReplicaNotRunning(str(exc)) from None
        return web.json_response({"action": action, **self.describe(name)})

    async def _fan_out(self, method: str, names: list[str], body: dict[str, Any] | None) -> dict[str, tuple[int, Any]]:
        """Send one admin call to each named replica; a replica that does not answer counts as 503."""
        headers = {"Authorization": f"Bearer {self._token}"}
        timeout = aiohttp.ClientTimeout(total=ADMIN_TIMEOUT_S)

        async def one(session: aiohttp.ClientSession, name: str) -> tuple[int, Any]:
            url = f"http://127.0.0.1:{self.supervisor.get(name).port}/admin/faults"
            try:
                async with session.request(method, url, json=body, headers=headers) as response:
                    text = await response.text()
                    try:
                        return response.status, json.loads(text) if text else None
                    except ValueError:
                        return response.status, text
            except (aiohttp.ClientError, TimeoutError) as exc:
                return 503, {"detail": f"replica {name} did not answer: {type(exc).__name__}"}

        async with aiohttp.ClientSession(timeout=timeout) as session:
            results = await asyncio.gather(*(one(session, n) for n in names))
        return dict(zip(names, results, strict=True))

    async def add_fault(self, request: web.Request) -> web.Response:
        self._authorize(request)
        try:
            spec = parse_spec(await request.json(), self._channels)
        except ValueError:
            raise InvalidJson("fault body is not valid JSON") from None
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


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """What `serve_cluster` reports once ready (also what cluster.json holds)."""

    url: str
    admin_token: str
    state_dir: Path
    state: dict[str, Any]


async def serve_cluster(
    config: GatewayConfig,
    replicas: int,
    state_dir: Path,
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    allow_public_bind: bool = False,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[ClusterInfo], None] | None = None,
    ready_timeout_s: float = 20.0,
) -> None:
    """Run the router and its replicas until `stop` is set (or the task is cancelled), then stop them all."""
    if not is_loopback_host(host) and not allow_public_bind:
        raise ClusterUsageError(f"refusing to bind {host}: not a loopback address (use --allow-public-bind)")
    if replicas < 1:
        raise ClusterUsageError(f"--replicas must be >= 1 (got {replicas})")
    token, replica_config, config_path = _prepare_state_dir(config, state_dir)
    ports = {f"r{i}": free_port() for i in range(1, replicas + 1)}
    stop = stop or asyncio.Event()

    with EventLog(state_dir / EVENTS_FILE, RouterMetrics()) as events:
        router = Router(
            RouterSettings.from_config(config), ports, "127.0.0.1", events, running=lambda: supervisor.running()
        )
        supervisor = Supervisor(
            config_path=config_path,
            admin_token=token,
            replicas=list(ports.items()),
            log_dir=state_dir,
            on_event=lambda kind, name, detail: events.emit(kind, name, detail),
            on_exit=router.process_exited,
        )
        state: dict[str, Any] = {}

        def write_state() -> None:
            state["replicas"] = [{"name": r.name, "port": r.port, "pid": r.pid} for r in supervisor.replicas.values()]
            _write_atomically(state_dir / STATE_FILE, state)

        channels = frozenset(c.code for c in config.channels)
        admin = AdminApi(router, supervisor, token, channels, write_state)
        runner = web.AppRunner(
            create_router_app(router, admin.routes()), access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S
        )
        fencing: asyncio.Future[None] | None = None
        try:
            await runner.setup()
            site = web.TCPSite(runner, host, port)
            await site.start()
            bound = runner.addresses[0][1]
            url = f"http://{host}:{bound}"
            for name in ports:
                supervisor.spawn(name)
            await _wait_all_up(router, supervisor, ready_timeout_s, stop)
            if stop.is_set():  # stopped while starting: never announce a cluster that is going away
                return
            router.announce_failovers()
            state.update(
                {
                    "router": {"url": url, "pid": os.getpid()},
                    "admin_token": token,
                    "ledger_path": replica_config["ledger"]["path"],
                    "events_path": str(events.path.resolve()),
                    "clock": {key: replica_config["clock"][key] for key in ("start", "speed", "anchor_unix")},
                }
            )
            write_state()
            fencing = asyncio.ensure_future(
                supervisor.fence_stopped(
                    lambda name: router.pool.member(name).up,
                    interval_s=router.settings.check_interval_s,
                    on_fenced=lambda _: write_state(),
                )
            )
            if on_ready is not None:
                on_ready(ClusterInfo(url, token, state_dir, dict(state)))
            await stop.wait()
        finally:
            if fencing is not None:
                fencing.cancel()
                await asyncio.gather(fencing, return_exceptions=True)
            try:
                await runner.cleanup()  # stop serving and probing first, so shutdown is not a "failure"
                await supervisor.stop_all()
            finally:
                supervisor.kill_all_now()


def _prepare_state_dir(config: GatewayConfig, state_dir: Path) -> tuple[str, dict[str, Any], Path]:
    """Create the state dir and the replicas' shared config; returns (token, that config, its path)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    token, _ = load_admin_token(config, os.environ)
    replica_config = resolve_for_replicas(config, state_dir)
    config_path = state_dir / REPLICA_CONFIG_FILE
    _write_atomically(config_path, replica_config)
    return token, replica_config, config_path


async def _wait_all_up(router: Router, supervisor: Supervisor, timeout_s: float, stop: asyncio.Event) -> None:
    deadline = time.monotonic() + timeout_s
    while len(router.pool.healthy()) < len(supervisor.replicas) and not stop.is_set():
        dead = [r.name for r in supervisor.replicas.values() if not r.alive]
        if dead:
            raise ClusterStartError(f"replica {', '.join(dead)} exited during start; see replica-*.log")
        if time.monotonic() > deadline:
            waiting = sorted(set(supervisor.replicas) - set(router.pool.healthy()))
            raise ClusterStartError(f"replica {', '.join(waiting)} not ready within {timeout_s:g} s")
        await asyncio.sleep(0.05)


def run_in_foreground(
    config: GatewayConfig,
    replicas: int,
    state_dir: Path,
    *,
    port: int,
    host: str,
    allow_public_bind: bool,
    on_ready: Callable[[ClusterInfo], None],
) -> None:
    """Serve until SIGTERM or SIGINT, on uvloop; used by this module's main and by `surge gateway`."""
    import uvloop

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve_cluster(
            config,
            replicas,
            state_dir,
            port=port,
            host=host,
            allow_public_bind=allow_public_bind,
            stop=stop,
            on_ready=on_ready,
        )

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mock_gateway.cluster", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, help="gateway config TOML (or resolved JSON)")
    parser.add_argument("--port", type=int, default=0, help="router port (0: any free port)")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--allow-public-bind", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 2

    def ready(info: ClusterInfo) -> None:
        print(f"surge cluster ready on {info.url} (state {info.state_dir})", flush=True)

    try:
        run_in_foreground(
            config,
            args.replicas,
            args.state_dir,
            port=args.port,
            host=args.host,
            allow_public_bind=args.allow_public_bind,
            on_ready=ready,
        )
    except ClusterUsageError as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 2
    except (ClusterStartError, OSError) as exc:
        print(f"cluster: could not start: {exc}", file=sys.stderr)
        return 3
    return 0


class ClusterProcess:
    """A running cluster subprocess, for `surge run`, tests and benchmarks."""

    def __init__(self, popen: subprocess.Popen[bytes], state_dir: Path, state: dict[str, Any]) -> None:
        self.popen = popen
        self.state_dir = state_dir
        self.state = state

    @classmethod
    def start(
        cls,
        config_path: Path | None,
        replicas: int,
        state_dir: Path,
        port: int = 0,
        overrides: dict[str, Any] | None = None,
        timeout_s: float = 20,
        host: str = "127.0.0.1",
        allow_public_bind: bool = False,
    ) -> ClusterProcess:
        """Launch `python -m mock_gateway.cluster` and wait until cluster.json exists and /readyz is 200.

        The config (file, `SURGE_*` environment and `overrides`) is resolved here, so a bad key raises
        `ConfigError` before any process starts. The subprocess gets `PR_SET_PDEATHSIG`, which Linux fires
        when the *thread* that forked it ends: call this from a thread that outlives the cluster (the main
        thread, or `asyncio.to_thread`, whose default-executor workers live until the event loop closes).
        """
        config = load_config(config_path, overrides=overrides)
        state_dir.mkdir(parents=True, exist_ok=True)
        resolved = state_dir / "cluster-config.json"
        data = config.model_dump(mode="json")
        token = data["admin"].pop("token")  # by environment, not in a file (see child_env)
        _write_atomically(resolved, data)
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        args = ["--config", str(resolved), "--port", str(port), "--replicas", str(replicas)]
        args += ["--state-dir", str(state_dir), "--host", host]
        if allow_public_bind:
            args.append("--allow-public-bind")
        with (state_dir / "cluster.log").open("ab") as log:
            popen = subprocess.Popen(
                guarded_argv("mock_gateway.cluster", args),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env=child_env(token),
            )
        cluster = cls(popen, state_dir, {})
        try:
            cluster._wait_ready(timeout_s)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        state_file = self.state_dir / STATE_FILE
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise ClusterStartError(f"cluster exited with {self.popen.returncode}: {self._log_tail()}")
            if state_file.exists():
                self.state = json.loads(state_file.read_text(encoding="utf-8"))
                if _get_status(self.url + "/readyz") == 200:
                    return
            time.sleep(0.05)
        raise ClusterStartError(f"cluster not ready within {timeout_s:g} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        log = self.state_dir / "cluster.log"
        lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines() if log.exists() else []
        return " | ".join(lines[-3:]) or "no output"

    def refresh(self) -> dict[str, Any]:
        """Re-read cluster.json (pids change on restart)."""
        self.state = json.loads((self.state_dir / STATE_FILE).read_text(encoding="utf-8"))
        return self.state

    @property
    def url(self) -> str:
        url: str = self.state["router"]["url"]
        return url

    @property
    def admin_token(self) -> str:
        token: str = self.state["admin_token"]
        return token

    @property
    def events_path(self) -> Path:
        return Path(self.state.get("events_path") or self.state_dir / EVENTS_FILE)

    @property
    def ledger_path(self) -> Path:
        return Path(self.state["ledger_path"])

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM (the cluster stops its replicas), wait, SIGKILL after `timeout_s`; idempotent."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _get_status(url: str) -> int:
    with contextlib.suppress(urllib.error.URLError, OSError):
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - our own loopback URL
                status: int = response.status
                return status
        except urllib.error.HTTPError as exc:
            return exc.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
