"""`surge gateway`: the mock gateway cluster (router + N replicas) in the foreground until Ctrl-C or SIGTERM.

It prints what a person needs to point a load tool or a curl at it — the router URL, where the admin token is
(never the token: a generated one is written only to the state directory's private cluster.json, mode 0600, as
the README promises, so it cannot land in a CI log or a terminal recording; one the operator supplied through
the config or `SURGE_ADMIN_TOKEN` is a secret they already have) and the state directory with the ledger, the
events and the logs.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from loadtests.errors import HarnessError, UsageError
from mock_gateway.cluster.serve import ClusterInfo, port_number, run_in_foreground
from mock_gateway.config_sources import load_config
from mock_gateway.errors import ClusterStartError, ClusterUsageError, ConfigError

DEFAULT_PORT = 8080


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {value})")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--replicas", type=_positive_int, default=3, help="replica processes (default 3)")
    parser.add_argument("--config", type=Path, help="gateway config TOML (docs/reference/gateway-config-keys.md)")
    parser.add_argument(
        "--port", type=port_number, default=DEFAULT_PORT, help=f"router port 0-65535 (default {DEFAULT_PORT}; 0: any)"
    )
    parser.add_argument(
        "--state-dir", type=Path, help="where cluster.json, events, logs and the ledger go (default: a temp dir)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="router address (default 127.0.0.1)")
    parser.add_argument(
        "--allow-public-bind", action="store_true", help="allow a non-loopback --host (never on a shared network)"
    )


def run(args: argparse.Namespace) -> int:
    if args.config is not None and not args.config.is_file():
        raise UsageError(f"--config {args.config}: no such file")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise UsageError(f"gateway config: {exc}") from None
    state_dir: Path = args.state_dir or Path(tempfile.mkdtemp(prefix="surge-gateway-"))

    def ready(info: ClusterInfo) -> None:
        names = ", ".join(f"{r['name']}:{r['port']}" for r in info.state["replicas"])
        print(f"surge gateway: router {info.url} ({args.replicas} replicas: {names})")
        if info.token_generated:
            where = Path(info.state_dir) / "cluster.json"
            print(f"surge gateway: admin token generated into {where} (key admin_token, readable by you only)")
        else:
            print("surge gateway: admin token as supplied (config or SURGE_ADMIN_TOKEN; not printed)")
        print(f"surge gateway: state dir {info.state_dir} (Ctrl-C stops everything)", flush=True)

    try:
        run_in_foreground(
            config,
            args.replicas,
            state_dir,
            port=args.port,
            host=args.host,
            allow_public_bind=args.allow_public_bind,
            on_ready=ready,
        )
    except ClusterUsageError as exc:
        raise UsageError(str(exc)) from None
    except (ClusterStartError, OSError) as exc:
        raise HarnessError(f"the gateway cluster did not start: {exc}") from None
    print("surge gateway: stopped")
    return 0
