"""Launching the locustfile as a subprocess — the only way surge's own process stays free of gevent.

Shared by `surge run` and find-capacity's probes: one command line, one wait (its group killed past a deadline).

Nothing of the caller's environment reaches Locust's options: Locust reads `LOCUST_*` variables, `~/.locust.conf`,
`./locust.conf` and `[tool.locust]` of `./pyproject.toml` on top of its command line, so a stray `run-time = 5s`
in the directory `surge run` was started from would quietly change the test. The child runs in the run folder's
`locust/` directory without any `LOCUST_*` variable and with `HOME` there too (user site-packages stay
importable through `PYTHONUSERBASE`); every path on its command line is absolute.

Locust runs in a session of its own (a terminal's Ctrl-C reaches only surge, which stops it in order) and dies
with surge even when surge is SIGKILLed (`mock_gateway.lifeline`). On a stop request (`stopping.Interrupt`)
the stop is recorded in the run folder and Locust gets SIGTERM, which the locustfile turns into a clean early
end; a second request kills the process group at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import site
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from loadtests.orchestration.stopping import Interrupt
from mock_gateway.lifeline import guarded_argv
from runfolder.layout import RunFolder

LOCUSTFILE = Path(__file__).resolve().parents[1] / "locustfile.py"
START_MARGIN_S = 4.0  # time for Locust (and its worker processes) to boot before t=0
STOP_GRACE_S = 50.0  # after the scenario's end: in-flight requests, workers' history still streaming, last windows
MASTER_PORT = 5557  # Locust's own default: where `surge worker` connects
EARLY_STOP_BOUND_S = 15.0  # after an early stop: in-flight grace (3 s) + last deltas (5 s) + Locust's shutdown


def locust_command(
    *,
    scenario_ref: str,
    scale: float,
    duration_s: float,
    target: str,
    run_dir: Path,
    start_unix: float,
    workers: int,
    metrics_port: int = 0,
    target_profile: Path | None = None,
    abort: bool = True,
    settle_tail_s: float = 0.0,
    hosts: int = 0,
    master_bind: str = "127.0.0.1",
    master_port: int = MASTER_PORT,
    hosts_wait_s: float = 0.0,
    max_clock_offset_s: float = 0.0,
) -> list[str]:
    """The Locust command line of a managed run; `metrics_port` > 0 serves Prometheus metrics on the master;
    `settle_tail_s`: the settlement watchers' time after the last arrival (`Scenario.settle_tail_s`); `hosts` > 0:
    a master on `master_bind:master_port` that starts once that many `surge worker`s have connected (at most
    `hosts_wait_s` later) instead of `workers` local processes."""
    run_dir = run_dir.resolve()
    locust_dir = RunFolder(run_dir).locust
    locust_dir.mkdir(parents=True, exist_ok=True)
    if Path(scenario_ref).is_file():
        scenario_ref = str(Path(scenario_ref).resolve())  # Locust runs in locust_dir, not in the caller's directory
    command = guarded_argv("locust", [
        "-f", str(LOCUSTFILE), "--headless", "--host", target,
        "--scenario", scenario_ref, "--scale", repr(scale),
        "--surge-duration", repr(duration_s), "--surge-out", str(run_dir),
        "--surge-start-unix", repr(start_unix),
        "--csv", str(locust_dir / "locust"), "--html", str(locust_dir / "report.html"),
        "--run-time", f"{int(duration_s + settle_tail_s + STOP_GRACE_S + START_MARGIN_S)}s",
        "--stop-timeout", "10", "--loglevel", "WARNING", "--logfile", str(locust_dir / "locust.log"),
        "--only-summary", "--surge-managed",
    ])  # fmt: skip
    if hosts:
        command += [
            "--master", "--expect-workers", str(hosts), "--expect-workers-max-wait", str(max(1, int(hosts_wait_s))),
            "--master-bind-host", master_bind, "--master-bind-port", str(master_port),
            "--enable-rebalancing",  # a worker that joins mid-run gets users (and surge gives it arrivals)
        ]  # fmt: skip
        if max_clock_offset_s:
            command += ["--surge-max-clock-offset", repr(max_clock_offset_s)]
    elif workers > 1:
        # Locust's own master port (5557, on every interface) is taken by any other multi-process run on the
        # machine; the forked workers connect to --master-port, so both are one free loopback port
        port = str(_free_loopback_port())
        command += ["--processes", str(workers), "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
                    "--master-port", port]  # fmt: skip
    if metrics_port:
        command += ["--metrics-port", str(metrics_port)]
    if target_profile is not None:
        command += ["--target", str(target_profile.resolve())]
    if not abort:
        command.append("--surge-no-abort")
    return command


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def run_locust(
    command: list[str],
    run_dir: Path,
    *,
    deadline_unix: float,
    allow_remote: bool = False,
    on_tick: Callable[[], None] | None = None,
    interrupt: Interrupt | None = None,
    start_unix: float = 0.0,
) -> int | None:
    """Run Locust until it exits or the deadline passes; its exit code, or None when it had to be killed.

    `start_unix` is the run's t=0, against which a stop requested through `interrupt` is recorded.
    """
    locust_dir = RunFolder(run_dir).locust.resolve()
    env = locust_environment(os.environ, locust_dir)
    if allow_remote:
        env["SURGE_ALLOW_REMOTE"] = "1"
    with (locust_dir / "stdout.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            cwd=locust_dir,
            start_new_session=True,
        )
        (RunFolder(run_dir).locust / "locust.pid").write_text(f"{process.pid}\n", encoding="utf-8")  # for post-mortems
        exited = asyncio.ensure_future(process.wait())
        forwarded = False
        try:
            while process.returncode is None and time.time() < deadline_unix:
                if interrupt is None:
                    await asyncio.wait({exited}, timeout=1.0)
                else:
                    woken = asyncio.ensure_future(interrupt.wait(1.0))
                    await asyncio.wait({exited, woken}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                    woken.cancel()
                    if interrupt.hurry:
                        break
                    if interrupt.requested and not forwarded and process.returncode is None:
                        forwarded = True
                        interrupt.write(run_dir, start_unix)
                        process.send_signal(signal.SIGTERM)
                        deadline_unix = min(deadline_unix, time.time() + EARLY_STOP_BOUND_S)
                if on_tick is not None:
                    on_tick()
            return process.returncode
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await exited


def locust_environment(caller: Mapping[str, str], home: Path) -> dict[str, str]:
    """The caller's environment without anything Locust reads as configuration (see the module docstring)."""
    env = {name: value for name, value in caller.items() if not name.upper().startswith("LOCUST_")}
    env.setdefault("PYTHONUSERBASE", site.getuserbase())
    env["HOME"] = str(home)
    return env
