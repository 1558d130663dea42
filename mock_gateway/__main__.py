"""`python -m mock_gateway --config FILE --port P`: one replica in the foreground (docs/internals.md §1).

Bad usage or configuration exits 2 with one line and no traceback. SIGTERM drains: /readyz turns 503, the
listening socket closes, in-flight requests finish, the ledger writer commits what it holds, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from mock_gateway.admin import load_admin_token
from mock_gateway.config import GatewayConfig
from mock_gateway.config_sources import load_config
from mock_gateway.errors import ConfigError, LedgerError
from mock_gateway.net import is_loopback_host
from mock_gateway.problems import ProblemRunner
from mock_gateway.replica.app import create_app
from mock_gateway.replica.state import STATE_KEY

SHUTDOWN_TIMEOUT_S = 10.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mock_gateway", description="Run one mock gateway replica.")
    parser.add_argument(
        "--config", type=Path, help="gateway config, .toml or .json (docs/reference/gateway-config-keys.md)"
    )
    parser.add_argument("--port", type=int, required=True, help="port to listen on (0: any free port)")
    parser.add_argument("--host", help="address to bind (default: server.host, 127.0.0.1)")
    parser.add_argument("--name", default="r1", help="replica name for X-Replica and the ledger (default r1)")
    parser.add_argument("--behind-router", action="store_true", help="leave the global and per-user caps to the router")
    parser.add_argument("--allow-public-bind", action="store_true", help="allow binding a non-loopback address")
    parser.add_argument(
        "--bank-share",
        type=float,
        default=1.0,
        help="this replica's share of each channel's bank quota, 0 < x <= 1 (the cluster gives each of N "
        "active-active replicas 1/N)",
    )
    parser.add_argument(
        "--listen-fd",
        type=int,
        help="serve on this inherited, already listening socket (the cluster supervisor binds the port)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = _config(args)
    except ConfigError as exc:
        print(f"mock_gateway: {exc}", file=sys.stderr)
        return 2
    host = args.host or config.server.host
    if not (0 <= args.port <= 65535):
        print(f"mock_gateway: --port must be 0-65535 (got {args.port})", file=sys.stderr)
        return 2
    if not is_loopback_host(host) and not (args.allow_public_bind or config.server.allow_public_bind):
        print(
            f"mock_gateway: refusing to bind non-loopback host {host!r}; pass --allow-public-bind "
            "(or server.allow_public_bind = true) if you mean it",
            file=sys.stderr,
        )
        return 2
    if not args.name or len(args.name) > 64 or not args.name.isprintable():
        print(f"mock_gateway: --name must be 1-64 printable characters (got {args.name!r})", file=sys.stderr)
        return 2
    if not 0 < args.bank_share <= 1:
        print(f"mock_gateway: --bank-share must be > 0 and <= 1 (got {args.bank_share:g})", file=sys.stderr)
        return 2
    if config.signing.required and not os.environ.get(config.signing.key_env):
        print(f"mock_gateway: signing.required needs the key in ${config.signing.key_env}", file=sys.stderr)
        return 2
    token, generated = load_admin_token(config, os.environ)
    if generated:
        print(f"surge replica {args.name} admin token: {token}", flush=True)
    try:
        _run(_serve(config, host, args.port, args.name, args.behind_router, token, args.listen_fd, args.bank_share))
    except LedgerError as exc:
        print(f"mock_gateway: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:
        print(f"mock_gateway: cannot listen on {host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 3
    return 0


def _config(args: argparse.Namespace) -> GatewayConfig:
    overrides = {"server": {"allow_public_bind": True}} if args.allow_public_bind else None
    return load_config(args.config, os.environ, overrides)


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """uvloop when it is installed: it roughly doubles what one core serves."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro)


async def _serve(
    config: GatewayConfig,
    host: str,
    port: int,
    name: str,
    behind_router: bool,
    token: str,
    listen_fd: int | None,
    bank_share: float,
) -> None:
    app = create_app(config, name=name, behind_router=behind_router, admin_token=token, bank_share=bank_share)
    runner = ProblemRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT_S, access_log=None, handle_signals=False)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        site: web.BaseSite
        if listen_fd is not None:
            site = web.SockSite(runner, socket.socket(fileno=listen_fd))
        else:
            site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        bound = _bound_port(runner) or port
        print(f"surge replica {name} listening on http://{host}:{bound}", flush=True)
        await stop.wait()
        app[STATE_KEY].draining = True
    finally:
        await runner.cleanup()


def _bound_port(runner: web.AppRunner) -> int | None:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return None


if __name__ == "__main__":
    sys.exit(main())
