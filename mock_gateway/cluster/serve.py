"""The gateway cluster: a router process that is also the supervisor of N replica processes.

    python -m mock_gateway.cluster.serve --config F --port P --replicas N --state-dir D [--host H] [--allow-public-bind]

One process owns both jobs because the router must learn of a death the instant it happens (the supervisor
sees the exit through a pidfd) and because killing, pausing and restarting replicas is part of the router's
admin API (docs/gateway.md). It writes `cluster.json` once every replica answered its first health check, and
`cluster-events.jsonl` as things happen (docs/internals.md §3).

`mock_gateway.cluster.handle.ClusterProcess` is the handle other code uses (`surge run`, tests, benchmarks);
`mock_gateway.cluster.admin_api` is the router's `/admin/` API.

Exit codes: 0 stopped by SIGTERM/SIGINT · 2 bad configuration or a public bind without
`--allow-public-bind` (nothing started) · 3 the cluster could not start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from mock_gateway.admin import load_admin_token
from mock_gateway.clock import SimClock
from mock_gateway.cluster.admin_api import AdminApi
from mock_gateway.cluster.events import EventLog, RouterMetrics
from mock_gateway.cluster.router import Router, RouterSettings, create_router_app
from mock_gateway.cluster.supervisor import Supervisor
from mock_gateway.config import ClockConfig, GatewayConfig
from mock_gateway.config_sources import load_config
from mock_gateway.errors import ClusterStartError, ClusterUsageError, ConfigError, LedgerError
from mock_gateway.net import is_loopback_host
from mock_gateway.problems import ProblemRunner
from mock_gateway.replica.ledger.storage import prepare as prepare_ledger

STATE_FILE = "cluster.json"
EVENTS_FILE = "cluster-events.jsonl"
REPLICA_CONFIG_FILE = "replica-config.json"
SHUTDOWN_GRACE_S = 3.0


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


def write_private_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically, readable by the owner only from the first byte: cluster.json holds the admin token.

    The temporary file is created 0600 by `mkstemp` (O_CREAT|O_EXCL), never with the umask's mode first and
    tightened afterwards, so there is no moment at which another user could open it.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_private_dir(path: Path) -> None:
    """A state directory only its owner can enter (0700): it holds the token, the ledger and the logs."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """What `serve_cluster` reports once ready (also what cluster.json holds)."""

    url: str
    admin_token: str
    state_dir: Path
    state: dict[str, Any]
    token_generated: bool = False
    """True when the token was made up at start (print it); False when the operator supplied it (never print)."""


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
    if not 0 <= port <= 65535:
        raise ClusterUsageError(f"--port must be 0-65535 (got {port})")
    token, generated, replica_config, config_path = _prepare_state_dir(config, state_dir)
    stop = stop or asyncio.Event()

    with EventLog(state_dir / EVENTS_FILE, RouterMetrics()) as events:
        supervisor = Supervisor(
            config_path=config_path,
            admin_token=token,
            replicas=[f"r{i}" for i in range(1, replicas + 1)],
            log_dir=state_dir,
            on_event=lambda kind, name, detail: events.emit(kind, name, detail),
            on_exit=lambda name: router.process_exited(name),
            on_port=lambda name, new_port: router.move(name, new_port),
            bank_share=1.0 / replicas if config.router.mode == "active-active" else 1.0,
        )
        router = Router(
            RouterSettings.from_config(
                config, SimClock.from_config(ClockConfig.model_validate(replica_config["clock"]))
            ),
            supervisor.ports(),
            "127.0.0.1",
            events,
            running=supervisor.running,
        )
        state: dict[str, Any] = {}

        def write_state() -> None:
            state["replicas"] = [{"name": r.name, "port": r.port, "pid": r.pid} for r in supervisor.replicas.values()]
            write_private_json(state_dir / STATE_FILE, state)

        channels = frozenset(c.code for c in config.channels)
        admin = AdminApi(router, supervisor, token, channels, write_state)
        runner = ProblemRunner(
            create_router_app(router, admin.routes()), access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S
        )
        fencing: asyncio.Future[None] | None = None
        try:
            await runner.setup()
            site = web.TCPSite(runner, host, port)
            await site.start()
            bound = runner.addresses[0][1]
            url = f"http://{host}:{bound}"
            for name in supervisor.replicas:
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
                on_ready(ClusterInfo(url, token, state_dir, dict(state), token_generated=generated))
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


def _prepare_state_dir(config: GatewayConfig, state_dir: Path) -> tuple[str, bool, dict[str, Any], Path]:
    """Create the state dir (0700), the replicas' shared config and the ledger file; returns (token, whether it
    was generated, that config, its path)."""
    make_private_dir(state_dir)
    token, generated = load_admin_token(config, os.environ)
    replica_config = resolve_for_replicas(config, state_dir)
    config_path = state_dir / REPLICA_CONFIG_FILE
    write_private_json(config_path, replica_config)
    try:
        prepare_ledger(Path(replica_config["ledger"]["path"]))  # once, before any replica opens it
    except LedgerError as exc:
        raise ClusterStartError(str(exc)) from exc
    return token, generated, replica_config, config_path


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


def port_number(text: str) -> int:
    """An argparse type: a TCP port 0-65535 (0: any free port). uvloop silently truncates a larger number."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535 (got {text!r})") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535 (got {value})")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mock_gateway.cluster.serve", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, help="gateway config TOML (or resolved JSON)")
    parser.add_argument("--port", type=port_number, default=0, help="router port (0: any free port)")
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


if __name__ == "__main__":
    sys.exit(main())
