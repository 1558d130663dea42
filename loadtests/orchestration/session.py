"""The one skeleton of every surge command that produces a run folder (`surge run`, `surge find-capacity`).

    choose_gateway   validate --host / --config before anything starts (a mistake is exit 2, nothing started)
    check_before_start  the preflight of the chosen gateway (preflight.py)
    new_run_dir      (run_folder) the folder, refused when it already holds a run
    stoppable        everything below under one `stopping.Interrupt` (Ctrl-C, SIGTERM; stopping.py)
    gateway_session  start the embedded cluster (exit 3 when it cannot) or take --host; the command writes
                     meta.json and drives the load inside; on the way out, whatever happened, the ledger is
                     copied and the cluster stopped (killed, on a second signal), a stop is recorded in
                     stop.json and events.csv written without the planned events the stop cancelled
    conclude         (run_folder) the folder judged once by `reports`; `cli.verdict_table.finish` prints it

The commands differ only in what they drive inside the session (one Locust run and a fault schedule, or
probes); the order around it, and how a signal ends it, are written here once.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from loadtests.orchestration import preflight
from loadtests.orchestration.embedded import kill_and_collect, start_cluster, stop_and_collect, validated_config
from loadtests.orchestration.stopping import Interrupt
from loadtests.scenario.model import Scenario
from loadtests.scenario.targets import check_target
from runfolder.events import RunEvent, write_events_csv
from runfolder.layout import RunFolder
from runfolder.stop import read_stop

if TYPE_CHECKING:
    from mock_gateway.cluster.handle import ClusterProcess

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class GatewayChoice:
    """The gateway a command will load: a `--host` surge did not start, or the embedded cluster.

    `config` is the embedded cluster's effective config for meta.json (None for `--host`: the gateway is not
    ours, so there are no caps to check against); `overrides` is the scenario's `[gateway]` table.
    """

    host: str | None
    config: dict[str, Any] | None
    config_path: Path | None
    replicas: int
    overrides: dict[str, Any]

    @property
    def embedded(self) -> bool:
        return self.host is None

    @property
    def replicas_for_meta(self) -> int | None:
        """meta.json `replicas`: only known for the cluster surge started."""
        return self.replicas if self.embedded else None


def choose_gateway(args: argparse.Namespace, overrides: dict[str, Any]) -> GatewayChoice:
    """From the options every run-folder command takes (`--host`, `--allow-remote`, `--config`, `--replicas`):
    the loopback guard on `--host`, else the embedded cluster's config with the scenario's `overrides`
    validated; UsageError otherwise. No `--replicas`: the embedded cluster's default."""
    count = args.replicas or preflight.DEFAULT_REPLICAS
    if args.host:
        host = check_target(args.host, allow_remote=args.allow_remote)
        return GatewayChoice(host, None, args.config, count, overrides)
    return GatewayChoice(None, validated_config(args.config, overrides), args.config, count, overrides)


def check_before_start(
    gateway: GatewayChoice, args: argparse.Namespace, scenario: Scenario, warn: Callable[[str], None]
) -> None:
    """The preflight (`preflight`): against the embedded cluster, every fault's replica or channel exists;
    against `--host`, the options it would ignore are refused (`args.config`, `args.replicas`), what the scenario
    asks that it cannot give is one `warn` line each, and the host answers; `--metrics-port` is free.
    UsageError or HarnessError."""
    preflight.check_metrics_port(getattr(args, "metrics_port", 0))
    if gateway.config is not None:
        preflight.check_faults(scenario.faults, gateway.config, gateway.replicas)
        return
    for warning in preflight.host_conflicts(args, scenario):
        warn(warning)
    preflight.check_reachable(str(gateway.host))


def stoppable(
    command: str,
    run_dir: Path,
    load: Callable[[Interrupt], Coroutine[Any, Any, T]],
    report: Callable[[T, Interrupt], int],
) -> int:
    """Run `load` (which opens the `gateway_session`) and then `report` (which concludes the folder) with
    SIGINT/SIGTERM routed to one `Interrupt`; the exit code. A first signal lets `load` end early and `report`
    still runs on what was recorded; a second one, or any signal once the load is over, skips the report (exit
    130 or 143, one line saying where the evidence is)."""
    interrupt = Interrupt()
    with interrupt.installed():
        result = asyncio.run(load(interrupt))
        interrupt.after_load()
        if interrupt.hurry:
            print(f"{command}: stopped without a report; what was recorded is in {run_dir.resolve()}")
            return interrupt.exit_code
        if interrupt.requested and not _recorded_any(run_dir):
            print(
                f"{command}: not started — {interrupt.reason} before the first arrival; nothing to report in "
                f"{run_dir.resolve()}"
            )
            return interrupt.exit_code
        return report(result, interrupt)


def _recorded_any(run_dir: Path) -> bool:
    windows = RunFolder(run_dir).windows
    return windows.is_file() and windows.stat().st_size > 0


@dataclass(slots=True)
class GatewaySession:
    """What a command drives inside `gateway_session`: the URL to load and the events to put in events.csv.

    `start_unix` is the run's t=0 (events.csv's `t_s` is measured from it); the command sets it once it knows
    (a run fixes it a few seconds ahead so that Locust has booted; a capacity search takes the moment the
    cluster is up).
    """

    run_dir: Path
    target: str
    cluster: ClusterProcess | None
    start_unix: float
    interrupt: Interrupt
    events: list[RunEvent] = field(default_factory=list)


@asynccontextmanager
async def gateway_session(choice: GatewayChoice, run_dir: Path, interrupt: Interrupt) -> AsyncIterator[GatewaySession]:
    """Start the embedded cluster (its state under `run_dir/cluster`) or take `--host`; on exit, by success or
    by exception, collect the ledger and the cluster's events (or, on a second signal, kill the cluster without
    the ledger copy), record a requested stop against the run's t=0 (the first record wins: Locust's own, of
    a web-UI stop or an abort, stays) and write events.csv without the scenario's phases and spikes planned
    after the stop: they never happened."""
    session = GatewaySession(run_dir, choice.host or "", None, time.time(), interrupt)
    try:
        if choice.embedded:
            session.cluster = await start_cluster(
                choice.config_path, choice.replicas, run_dir / "cluster", choice.overrides
            )
            session.target = session.cluster.url
        yield session
    finally:
        if session.cluster is not None:
            collect = (
                kill_and_collect(session.cluster) if interrupt.hurry else stop_and_collect(session.cluster, run_dir)
            )
            session.events.extend(await collect)
        if interrupt.requested and not interrupt.hurry:
            interrupt.write(run_dir, session.start_unix)
        stop = read_stop(run_dir)
        if stop is not None:
            session.events = [e for e in session.events if e.source != "scenario" or e.unix < stop.at_unix]
        write_events_csv(RunFolder(run_dir).events, session.start_unix, session.events)
