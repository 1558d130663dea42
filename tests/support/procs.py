"""Real processes for the integration tests: a gateway replica and the locustfile under Locust.

Locust is only ever run as a subprocess (it gevent-patches whatever imports it), always in its own process
group so that a timeout kills its --processes children too; every process is killed in a `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"


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


def history(out: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted((out / "history").glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            rows.extend(csv.DictReader(handle))
    return rows


def windows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "windows.jsonl").read_text(encoding="utf-8").splitlines() if line]


def generator(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "generator.json").read_text(encoding="utf-8"))
    return data
