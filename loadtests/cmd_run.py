"""`surge run SCENARIO`: one whole load test, from scenario to verdict (CONTRACT §2, §5, §6).

The order matters and is the whole job of this module: validate everything first (exit 2 with nothing
started), then start the cluster, fix a shared t=0 a few seconds ahead, launch Locust as a subprocess (it
imports gevent, which must never patch this process), play the faults against the same t=0, bound every wait,
and only then hand the folder to `reports` for the verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from loadtests.chaos import ChaosEvent, ChaosPlayer
from loadtests.errors import HarnessError, UsageError
from loadtests.live import LiveWindows
from loadtests.run_folder import (
    Event,
    copy_ledger,
    git_commit,
    new_run_dir,
    read_cluster_events,
    versions,
    write_events_csv,
    write_json,
)
from loadtests.shapes import Scenario, load_scenario
from loadtests.targets import check_target

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
START_MARGIN_S = 4.0  # time for Locust (and its worker processes) to boot before t=0
STOP_GRACE_S = 30.0  # after the scenario's end: in-flight requests, last windows, Locust's own reports


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", help="a built-in scenario name (see `surge scenarios`) or a TOML file")
    parser.add_argument("--scale", type=_positive_float, default=1.0, help="multiply every rate (default 1)")
    parser.add_argument(
        "--duration", type=_positive_float, help="override the scenario's duration in seconds"
    )
    parser.add_argument("--host", help="load this gateway instead of starting the embedded cluster")
    parser.add_argument("--allow-remote", action="store_true", help="allow a --host that is not loopback")
    parser.add_argument("--config", type=Path, help="gateway config TOML for the embedded cluster")
    parser.add_argument(
        "--workers", type=_positive_int, default=1, help="Locust worker processes (default 1)"
    )
    parser.add_argument(
        "--replicas", type=_positive_int, default=3, help="embedded cluster replicas (default 3)"
    )
    parser.add_argument("--out", help="the run folder (default runs/<UTC timestamp>-<scenario>)")
    parser.add_argument(
        "--baseline", type=Path, help="a previous run folder to compare against in the report"
    )


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number (got {text!r})") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0 (got {text})")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number (got {text!r})") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {value})")
    return value


def run(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario).scaled(args.scale, args.duration)
    host = check_target(args.host, allow_remote=args.allow_remote) if args.host else None
    if args.baseline is not None and not (args.baseline / "summary.json").is_file():
        raise UsageError(f"--baseline {args.baseline} is not a run folder (no summary.json)")
    gateway_config = _gateway_config(args.config, scenario) if host is None else None
    run_dir = new_run_dir(args.out, scenario.name)
    console = Console(stderr=True)
    console.print(f"surge run {scenario.name}: {scenario.description}  →  {run_dir}")
    return asyncio.run(_orchestrate(args, scenario, host, gateway_config, run_dir, console))


def _gateway_config(config_path: Path | None, scenario: Scenario) -> dict[str, Any]:
    """Validate the embedded cluster's config now, so that a bad key is exit 2 before anything starts."""
    from mock_gateway.config import ConfigError, load_config

    if config_path is not None and not config_path.is_file():
        raise UsageError(f"--config {config_path}: no such file")
    try:
        config = load_config(config_path, overrides=scenario.gateway or None)
    except ConfigError as exc:
        raise UsageError(f"gateway config: {exc}") from None
    public: dict[str, Any] = config.public_dict()
    return public


async def _orchestrate(
    args: argparse.Namespace,
    scenario: Scenario,
    host: str | None,
    gateway_config: dict[str, Any] | None,
    run_dir: Path,
    console: Console,
) -> int:
    from mock_gateway.cluster import ClusterProcess

    cluster: ClusterProcess | None = None
    events: list[Event] = []
    try:
        if host is None:
            try:
                cluster = await asyncio.to_thread(
                    ClusterProcess.start,
                    args.config,
                    args.replicas,
                    run_dir / "cluster",
                    overrides=scenario.gateway or None,
                )
            except Exception as exc:
                raise HarnessError(f"the embedded gateway cluster did not start: {exc}") from exc
            target = cluster.url
        else:
            target = host
        start_unix = time.time() + START_MARGIN_S + 0.5 * args.workers
        _write_meta(run_dir, args, scenario, target, host is None, gateway_config, start_unix)
        events.extend(_scenario_events(scenario, start_unix))
        locust_rc = await _drive(args, scenario, target, run_dir, start_unix, cluster, events, console)
        if locust_rc is None:
            raise HarnessError("Locust did not stop within its bound and was killed")
        if not (run_dir / "windows.jsonl").exists():
            raise HarnessError(f"Locust exited with {locust_rc} and recorded nothing; see {run_dir}/locust/")
    finally:
        if cluster is not None:
            copy_ledger(cluster.ledger_path, run_dir / "ledger.sqlite")
            await asyncio.to_thread(cluster.stop)
            events.extend(read_cluster_events(cluster.events_path))
        if events:
            write_events_csv(run_dir / "events.csv", _start_of(run_dir), events)
    return _finish(run_dir, args.baseline, console)


def _start_of(run_dir: Path) -> float:
    import json

    meta = run_dir / "meta.json"
    return float(json.loads(meta.read_text())["started_unix"]) if meta.exists() else time.time()


def _write_meta(
    run_dir: Path,
    args: argparse.Namespace,
    scenario: Scenario,
    target: str,
    embedded: bool,
    gateway_config: dict[str, Any] | None,
    start_unix: float,
) -> None:
    write_json(
        run_dir / "meta.json",
        {
            "scenario": scenario.name,
            "description": scenario.description,
            "scenario_ref": args.scenario,
            "seed": scenario.seed,
            "scale": args.scale,
            "duration_s": scenario.duration_s,
            "started_unix": start_unix,
            "host": target,
            "embedded": embedded,
            "workers": args.workers,
            "replicas": args.replicas if embedded else None,
            "versions": versions(),
            "git_commit": git_commit(),
            "gateway_config": gateway_config,
            "slo": scenario.slo.model_dump(),
            "phases": [{"name": n, "start_s": s, "end_s": e} for n, s, e in scenario.phases()],
            "spikes": [{"start_s": s, "end_s": e} for s, e in scenario.spikes()],
            "faults": [fault.model_dump() for fault in scenario.faults],
            "client_policy": scenario.client.policy,
            "rate": [point.model_dump() for point in scenario.rate],
        },
    )


def _scenario_events(scenario: Scenario, start_unix: float) -> list[Event]:
    found = [
        Event(start_unix + s, "scenario", "phase_start", name, f"until {e:g}s")
        for name, s, e in scenario.phases()
    ]
    for start, end in scenario.spikes():
        found.append(
            Event(start_unix + start, "scenario", "spike_start", "", f"peak {scenario.rate_at(end):.0f}/s")
        )
        found.append(Event(start_unix + end, "scenario", "spike_end", "", ""))
    return found


def _locust_command(
    args: argparse.Namespace, scenario: Scenario, target: str, run_dir: Path, start: float
) -> list[str]:
    locust_dir = run_dir / "locust"
    locust_dir.mkdir(exist_ok=True)
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", target,
        "--scenario", args.scenario, "--scale", repr(args.scale),
        "--surge-duration", repr(scenario.duration_s), "--surge-out", str(run_dir),
        "--surge-start-unix", repr(start),
        "--csv", str(locust_dir / "locust"), "--html", str(locust_dir / "report.html"),
        "--run-time", f"{int(scenario.duration_s + STOP_GRACE_S + START_MARGIN_S)}s",
        "--stop-timeout", "10", "--loglevel", "WARNING", "--logfile", str(locust_dir / "locust.log"),
        "--only-summary",
    ]  # fmt: skip
    if args.workers > 1:
        command += ["--processes", str(args.workers)]
    return command


async def _drive(
    args: argparse.Namespace,
    scenario: Scenario,
    target: str,
    run_dir: Path,
    start_unix: float,
    cluster: Any,
    events: list[Event],
    console: Console,
) -> int | None:
    """Run Locust and the fault schedule side by side; Locust's exit code, None if it had to be killed."""
    env = dict(os.environ)
    if args.allow_remote:
        env["SURGE_ALLOW_REMOTE"] = "1"
    command = _locust_command(args, scenario, target, run_dir, start_unix)
    log = (run_dir / "locust" / "stdout.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        *command, stdout=log, stderr=asyncio.subprocess.STDOUT, env=env, start_new_session=True
    )
    live = LiveWindows(run_dir / "windows.jsonl")

    def on_chaos(event: ChaosEvent) -> None:
        events.append(Event(event.unix, "chaos", event.kind, event.target, event.detail))
        live.faults.append(f"{event.kind} {event.target} {event.detail}".strip())

    chaos_task: asyncio.Task[None] | None = None
    if scenario.faults and cluster is not None:
        player = ChaosPlayer(cluster.url, cluster.admin_token, scenario.faults, start_unix, on_event=on_chaos)
        chaos_task = asyncio.create_task(player.play())
    deadline = start_unix + scenario.duration_s + STOP_GRACE_S + 30.0
    try:
        with Live(Text(""), console=console, refresh_per_second=2, transient=False) as display:
            while process.returncode is None and time.time() < deadline:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), timeout=1.0)
                live.poll()
                elapsed = min(max(0.0, time.time() - start_unix), scenario.duration_s)
                display.update(Text(live.status(elapsed, scenario.duration_s)))
        if process.returncode is None:
            _kill_group(process.pid)
            await process.wait()
            return None
        return process.returncode
    finally:
        if process.returncode is None:
            _kill_group(process.pid)
            await process.wait()
        if chaos_task is not None:
            chaos_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await chaos_task
        log.close()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _finish(run_dir: Path, baseline: Path | None, console: Console) -> int:
    from reports.finalize import finalize_run

    from loadtests.verdict_table import print_verdicts

    summary = finalize_run(run_dir, baseline)
    print_verdicts(summary, Console())
    report = run_dir / "report.html"
    print(f"report: {report.resolve() if report.exists() else run_dir.resolve()}")
    exit_code: int = summary["exit_code"]
    return exit_code
