"""Real processes for the black-box and end-to-end tests: `surge` itself, a gateway replica, the locustfile under
Locust, a scripted server in the test's own event loop, and loopback ports.

Locust is only ever run as a subprocess (it gevent-patches whatever imports it), always in its own process
group so that a timeout kills its --processes children too; every process is killed in a `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
SURGE = Path(sys.executable).with_name("surge")  # the console script, as a user runs it


def surge(
    *argv: str, timeout_s: float = 150, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`surge ARGV` run to its end (the test fails on the timeout), its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "loadtests.cli.main", *argv],
        capture_output=True, text=True, timeout=timeout_s, check=False, cwd=cwd, env=env,
    )  # fmt: skip


def free_port() -> int:
    """A loopback port free a moment ago; for a listener that must be bound by its own process."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port_url() -> str:
    """The URL of a loopback port where nothing listens: every connection to it is refused."""
    return f"http://127.0.0.1:{free_port()}"


def wait_ready(
    url: str, *, process: subprocess.Popen[Any] | None = None, log: Path | None = None, timeout_s: float = 20
) -> None:
    """Until GET `url` answers 200; fails at once, with its log, if the server's `process` ended meanwhile."""

    def answers() -> bool:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback only
            return bool(response.status == 200)

    _until(answers, url, process, log, timeout_s)


def wait_listening(
    port: int, *, process: subprocess.Popen[Any] | None = None, log: Path | None = None, timeout_s: float = 20
) -> None:
    """Until a TCP connection to loopback `port` is accepted (a TLS server a plain GET cannot ask)."""

    def accepts() -> bool:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True

    _until(accepts, f"127.0.0.1:{port}", process, log, timeout_s)


def _until(
    check: Callable[[], bool], what: str, process: subprocess.Popen[Any] | None, log: Path | None, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except OSError:
            pass  # not listening yet
        said = log.read_text(errors="replace")[-3000:] if log is not None else ""
        assert process is None or process.poll() is None, f"the server of {what} ended: {said}"
        assert time.monotonic() < deadline, f"{what} not ready within {timeout_s} s: {said}"
        time.sleep(0.1)


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """`app` on a free loopback port of this event loop; yields its base URL, cleaned up on exit."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def replica(tmp_path: Path, config: str = "") -> Iterator[str]:
    """`python -m mock_gateway` on a free port with its own ledger; yields its base URL."""
    config_path = tmp_path / "gateway.toml"
    config_path.write_text(f'[ledger]\npath = "{tmp_path / "ledger.sqlite"}"\n{config}', encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "mock_gateway", "--config", str(config_path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        url = ""
        assert process.stdout is not None
        while not url and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            found = re.search(r"listening on (http://\S+)", line)
            url = found.group(1) if found else ""
        assert url, "the replica did not start"
        yield url
    finally:
        process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


async def run_locust(host: str, scenario: Path, out: Path, *extra: str, timeout_s: float = 60) -> int:
    """The locustfile headless against `host`; its exit code (the test fails if it does not end by itself)."""
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", host,
        "--scenario", str(scenario), "--surge-out", str(out), "--csv", str(out / "locust" / "locust"),
        "--only-summary", "--loglevel", "WARNING", "--surge-managed", *extra,
    ]  # fmt: skip
    (out / "locust").mkdir(parents=True, exist_ok=True)
    with (out / "locust" / "stdout.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *command, stdout=log, stderr=asyncio.subprocess.STDOUT, start_new_session=True, cwd=ROOT
        )
        try:
            return await asyncio.wait_for(process.wait(), timeout_s)
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()


def locust_exit_code(out: Path) -> int:
    """The exit code a managed run must end with: Locust's own `--exit-code-on-error` (1) once its statistics hold a
    failed request (a timeout on a busy machine is one), else 0: surge's verdict does not set a managed run's code."""
    with (out / "locust" / "locust_stats.csv").open(newline="", encoding="utf-8") as handle:
        total = next(row for row in csv.DictReader(handle) if row["Name"] == "Aggregated")
    return 1 if int(total["Failure Count"]) else 0
