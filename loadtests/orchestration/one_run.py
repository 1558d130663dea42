"""One `surge run` inside its gateway session: plan a shared t=0, write meta.json, drive Locust and the fault
players side by side with a live status line, bound every wait, and copy a target's ledger into the folder.

The cluster boots before t=0 and Locust starts its arrivals at it, so every process agrees on the timeline the
faults and the report use. Ctrl-C or SIGTERM (stopping.Interrupt) ends it early: the load stops, the faults
are undone, and whatever Locust recorded is the evidence.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import dataclasses
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console

from errortext.console_text import one_line
from loadtests.channels import default_channels
from loadtests.errors import HarnessError
from loadtests.meta import run_meta
from loadtests.orchestration import preflight
from loadtests.orchestration.chaos import ChaosEvent, ChaosPlayer
from loadtests.orchestration.exec_faults import ExecPlayer
from loadtests.orchestration.live import LiveWindows
from loadtests.orchestration.locust_process import START_MARGIN_S, STOP_GRACE_S, locust_command, run_locust
from loadtests.orchestration.memory import sample_memory
from loadtests.orchestration.session import GatewayChoice, GatewaySession, gateway_session
from loadtests.orchestration.stopping import Interrupt
from loadtests.orchestration.target_ledger import copy_target_ledger
from loadtests.scenario.model import Scenario
from loadtests.scenario.profile import TargetProfile, target_meta
from runfolder.events import RunEvent
from runfolder.layout import RunFolder, RunFolderError, write_json
from runfolder.models import read_meta

TRACE_LEAD_S = 1.5
TRACE_LEAD_PER_ROW_S = 2.0 / 100_000
CLUSTER_BOOT_S = 3.0  # the cluster is ready well within this on a busy 2-core machine; t=0 is planned past it
# a scenario that sets the gateway clock has its business times anchored at the planned t=0 before the cluster
# boots, so a slow boot would shift them (double11's midnight before its spike): its margin is wider (measured: 4.2 s
# to boot with four runs at once on 2 cores)
CLOCKED_BOOT_S = 10.0

# the live line while Locust runs: entered once, it yields `show(text)`
StatusLine = Callable[[], AbstractContextManager[Callable[[str], None]]]


def _trace_lead_s(scenario: Scenario) -> float:
    """Extra time before t=0 for each Locust process to import pandas and read a replayed trace (measured: 1.5 s
    and 2 s per 100,000 rows of CSV on a busy 2-core machine), or its first seconds' arrivals are dropped."""
    replay = scenario.replay()
    return 0.0 if replay is None else TRACE_LEAD_S + TRACE_LEAD_PER_ROW_S * len(replay.trace)


async def orchestrate(
    args: argparse.Namespace,
    scenario: Scenario,
    gateway: GatewayChoice,
    run_dir: Path,
    console: Console,
    profile: TargetProfile | None,
    interrupt: Interrupt,
    status: StatusLine,
) -> None:
    """The run inside its gateway session: t=0 planned past the boot, meta.json written, the load driven, and
    the target's ledger copied into the folder; `status` draws the live line while Locust runs."""
    workers_s = args.hosts_wait + 0.5 * args.hosts if args.hosts else 0.5 * args.workers
    lead_s = START_MARGIN_S + workers_s + _trace_lead_s(scenario)
    clocked = gateway.embedded and "clock" in gateway.overrides
    planned = time.time() + (CLOCKED_BOOT_S if clocked else CLUSTER_BOOT_S) + lead_s
    if gateway.embedded:
        gateway = dataclasses.replace(gateway, overrides=_clock_anchored(gateway.overrides, planned))
    async with gateway_session(gateway, run_dir, interrupt) as session:
        if interrupt.requested:
            return
        session.start_unix = max(planned, time.time() + lead_s) if gateway.embedded else time.time() + lead_s
        if clocked and session.start_unix > planned:
            console.print(
                f"warning: the gateway took {session.start_unix - planned:.1f} s longer to boot than planned; its "
                "business clock runs that much (times its speed) ahead of the scenario's timeline",
                markup=False,
            )
        meta = run_meta(
            scenario,
            scenario_ref=args.scenario,
            scale=args.scale,
            started_unix=session.start_unix,
            host=session.target,
            workers=args.hosts or args.workers,
            gateway_config=gateway.config,
            replicas=gateway.replicas_for_meta,
        )
        if profile is not None:
            target = target_meta(profile, args.target, default_channels(scenario))
            meta = meta.model_copy(update={"target": target})
        write_json(RunFolder(run_dir).meta, meta)
        session.events.extend(_scenario_events(scenario, session.start_unix))
        if not gateway.embedded:
            session.events.extend(preflight.skipped_fault_events(scenario.faults, session.start_unix))
        rc = await _drive(args, scenario, session, status)
        if interrupt.requested:
            return  # whatever Locust recorded before it stopped is the evidence
        if rc is None:
            raise HarnessError(f"Locust did not stop within its bound and was killed; see {run_dir}/locust/")
        refused = refused_clock(run_dir)
        if refused is not None:
            raise HarnessError(refused)
        if not RunFolder(run_dir).windows.exists():
            raise HarnessError(f"Locust exited with {rc} and recorded nothing; see {run_dir}/locust/")
        if profile is not None and profile.ledger is not None:
            rows = copy_target_ledger(profile.ledger, os.environ, run_dir)
            console.print(
                f"ledger: {rows} rows copied from {one_line(profile.name)}'s ledger into "
                f"{one_line(run_dir / 'ledger.sqlite')}",
                markup=False,
            )


def refused_clock(run_dir: Path) -> str | None:
    """The line of a worker refused for its clock (meta.json `clocks`), or None."""
    try:
        meta = read_meta(run_dir)
    except RunFolderError:
        return None
    return next((clock.refusal() for clock in meta.clocks if not clock.within_bound), None)


def _clock_anchored(gateway: dict[str, Any], t0_unix: float) -> dict[str, Any]:
    """The scenario's [gateway] with the gateway clock anchored at the run's t=0, so that it reads `clock.start`
    when the load starts: double11's midnight falls on its spike and due-date-wave's days on their bumps, not a
    start margin (times the clock's speed: a whole business day at due-date-wave's short durations) earlier. An
    anchor the scenario sets itself is kept."""
    anchored = copy.deepcopy(gateway)
    anchored.setdefault("clock", {}).setdefault("anchor_unix", t0_unix)
    return anchored


def _scenario_events(scenario: Scenario, start_unix: float) -> list[RunEvent]:
    found = [
        RunEvent(start_unix + s, "scenario", "phase_start", name, f"until {e:g}s") for name, s, e in scenario.phases()
    ]
    for start, end in scenario.spikes():
        peak = scenario.peak_rate(start, end)
        found.append(RunEvent(start_unix + start, "scenario", "spike_start", "", f"to {peak:.0f}/s"))
        found.append(RunEvent(start_unix + end, "scenario", "spike_end", "", ""))
    return found


async def _drive(
    args: argparse.Namespace, scenario: Scenario, session: GatewaySession, status: StatusLine
) -> int | None:
    """Locust and the fault schedule side by side, with the live status line; Locust's exit code."""
    run_dir, start_unix, cluster, events = session.run_dir, session.start_unix, session.cluster, session.events
    interrupt = session.interrupt
    live = LiveWindows(RunFolder(run_dir).windows, horizon_s=scenario.duration_s)

    def on_chaos(event: ChaosEvent) -> None:
        events.append(RunEvent(event.unix, "chaos", event.kind, event.target, event.detail))
        live.faults.append(one_line(f"{event.kind} {event.target} {event.detail}".strip()))

    tasks: list[asyncio.Task[None]] = []
    if cluster is not None:
        tasks.append(asyncio.create_task(sample_memory(cluster, start_unix, RunFolder(run_dir).memory)))
    players: list[FaultPlayer] = []
    if any(fault.action == "exec" for fault in scenario.faults):
        players.append(ExecPlayer(scenario.faults, start_unix, on_event=on_chaos))
    builtin = [fault for fault in scenario.faults if fault.action != "exec"]
    if builtin and cluster is not None:
        players.append(ChaosPlayer(cluster.url, cluster.admin_token, builtin, start_unix, on_event=on_chaos))
    chaos = [
        asyncio.create_task(_play_until_stopped(player, lambda: _stopped(run_dir, interrupt), interrupt))
        for player in players
    ]
    command = locust_command(
        scenario_ref=args.scenario,
        scale=args.scale,
        duration_s=scenario.duration_s,
        target=session.target,
        run_dir=run_dir,
        start_unix=start_unix,
        workers=args.workers,
        target_profile=args.target,
        abort=not args.no_abort,
        metrics_port=args.metrics_port,
        settle_tail_s=scenario.settle_tail_s(),
        hosts=args.hosts,
        master_bind=args.master_bind,
        master_port=args.master_port,
        hosts_wait_s=args.hosts_wait,
        max_clock_offset_s=args.max_clock_offset,
    )
    try:
        with status() as show:

            def tick() -> None:
                live.poll()
                elapsed = min(max(0.0, time.time() - start_unix), scenario.duration_s)
                show(live.status(elapsed, scenario.duration_s))

            deadline = start_unix + scenario.duration_s + scenario.settle_tail_s() + STOP_GRACE_S + 30.0
            return await run_locust(
                command,
                run_dir,
                deadline_unix=deadline,
                allow_remote=args.allow_remote,
                on_tick=tick,
                interrupt=interrupt,
                start_unix=start_unix,
            )
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for playing in chaos:
            if interrupt.hurry or not _stopped(run_dir, interrupt):
                playing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await playing
        for player in players:
            if isinstance(player, ExecPlayer) and not interrupt.hurry:
                await player.undo()  # a fault outlasting the run: the team's system is left as it was found


def _stopped(run_dir: Path, interrupt: Interrupt) -> bool:
    """The run is ending early: a signal to surge, or the Locust master's record of an abort or web-UI stop."""
    return interrupt.requested or RunFolder(run_dir).stop.exists()


class FaultPlayer(Protocol):
    """A fault schedule (chaos.ChaosPlayer: the built-in faults; exec_faults.ExecPlayer: a team's commands)."""

    async def play(self) -> None: ...

    async def undo(self) -> None: ...


async def _play_until_stopped(player: FaultPlayer, early_stop: Callable[[], bool], interrupt: Interrupt) -> None:
    """The fault schedule until it ends or the run stops early; then what it injected is undone at once, so the
    attempts still in flight during the stop's grace meet no paused replica."""
    play = asyncio.create_task(player.play())
    try:
        while not play.done() and not early_stop():
            await asyncio.wait({play}, timeout=0.2)
    finally:  # also when this task is cancelled: no step of the schedule outlives it
        play.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await play
    if early_stop() and not interrupt.hurry:
        await player.undo()
