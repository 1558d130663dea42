"""`surge worker --master HOST[:PORT]`: one Locust worker of a distributed run, on this host, in the foreground.

It runs the same locustfile as the master (`surge run --hosts N`, or a plain `locust -f ... --master`) with
Locust's `--worker`, in the current directory and with the environment cleaned as `surge run` cleans it (no
`LOCUST_*`, no `~/.locust.conf`): what the worker does comes from the master's message at test start. It needs
no run folder: its history is spooled under `./surge-spool/` and streamed to the master, which writes the run
folder (docs/distributed.md). Locust's exit code is this command's; Ctrl-C or SIGTERM stops the worker.

The loopback guard holds on each worker too: the target the master names must be a loopback address unless
`--allow-remote` is given here.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
from pathlib import Path

from loadtests.errors import UsageError
from loadtests.orchestration.locust_process import LOCUSTFILE, MASTER_PORT, locust_environment
from mock_gateway.lifeline import guarded_argv


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--master", required=True, metavar="HOST[:PORT]", help=f"the master (port {MASTER_PORT})")
    parser.add_argument(
        "--allow-remote", action="store_true", help="load the master's target even when it is not a loopback address"
    )


def master_address(text: str) -> tuple[str, int]:
    """HOST[:PORT] → (host, port); UsageError on anything else."""
    host, _, port_text = text.rpartition(":") if ":" in text else (text, "", str(MASTER_PORT))
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not host or not 0 < port < 65536:
        raise UsageError(f"--master must be HOST or HOST:PORT with a port 1-65535 (got {text!r})")
    return host, port


def run(args: argparse.Namespace) -> int:
    host, port = master_address(args.master)
    here = Path.cwd()
    env = locust_environment(os.environ, here)
    if args.allow_remote:
        env["SURGE_ALLOW_REMOTE"] = "1"
    command = guarded_argv("locust", [
        "-f", str(LOCUSTFILE), "--worker", "--master-host", host, "--master-port", str(port), "--loglevel", "WARNING",
    ])  # fmt: skip
    print(f"surge worker: connecting to the master at {host}:{port}; history spooled under {here / 'surge-spool'}")
    process = subprocess.Popen(command, env=env, cwd=here)
    previous = signal.signal(signal.SIGTERM, lambda *_: process.terminate())
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
