"""Launching the locustfile as a subprocess — the only way surge's own process stays free of gevent.

Shared by `surge run` and the probes of `surge find-capacity`: one command line (docs/internals.md §5), one
bounded wait that kills the whole process group (Locust's --processes children included) past its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

LOCUSTFILE = Path(__file__).resolve().parents[1] / "locustfile.py"
START_MARGIN_S = 4.0  # time for Locust (and its worker processes) to boot before t=0
STOP_GRACE_S = 30.0  # after the scenario's end: in-flight requests, last windows, Locust's own reports


def locust_command(
    *,
    scenario_ref: str,
    scale: float,
    duration_s: float,
    target: str,
    run_dir: Path,
    start_unix: float,
    workers: int,
    target_profile: Path | None = None,
) -> list[str]:
    locust_dir = run_dir / "locust"
    locust_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", target,
        "--scenario", scenario_ref, "--scale", repr(scale),
        "--surge-duration", repr(duration_s), "--surge-out", str(run_dir),
        "--surge-start-unix", repr(start_unix),
        "--csv", str(locust_dir / "locust"), "--html", str(locust_dir / "report.html"),
        "--run-time", f"{int(duration_s + STOP_GRACE_S + START_MARGIN_S)}s",
        "--stop-timeout", "10", "--loglevel", "WARNING", "--logfile", str(locust_dir / "locust.log"),
        "--only-summary",
    ]  # fmt: skip
    if workers > 1:
        command += ["--processes", str(workers)]
    if target_profile is not None:
        command += ["--target", str(target_profile.resolve())]
    return command


async def run_locust(
    command: list[str],
    run_dir: Path,
    *,
    deadline_unix: float,
    allow_remote: bool = False,
    on_tick: Callable[[], None] | None = None,
) -> int | None:
    """Run Locust until it exits or the deadline passes; its exit code, or None when it had to be killed."""
    env = dict(os.environ)
    if allow_remote:
        env["SURGE_ALLOW_REMOTE"] = "1"
    with (run_dir / "locust" / "stdout.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *command, stdout=log, stderr=asyncio.subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            while process.returncode is None and time.time() < deadline_unix:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), timeout=1.0)
                if on_tick is not None:
                    on_tick()
            return process.returncode
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
