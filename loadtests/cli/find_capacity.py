"""`surge find-capacity`: the highest arrival rate that still meets the SLOs — the knee.

Each probe is a short steady run of the locustfile at one rate against the same gateway (the embedded cluster
is started once for the whole search). The search itself is `capacity_search.find_knee`; the probes' windows
and histories are gathered on one time axis into a run folder (docs/internals.md §6) that `reports` turns into
summary.json and a report with the offered-vs-goodput curve.

Ctrl-C or SIGTERM (stopping.Interrupt) stops the probe running and starts no other: the probes that finished
are kept in the folder and its report, no capacity is claimed (`limited_by: "interrupted"`), exit 130 or 143.

With `--target PROFILE` the probes drive a team's own API (docs/targets.md), exactly as `surge run --target` does:
the profile's base_url is the host, its rules classify every answer, and its `[ledger]` query is copied into the
folder after the search, so the money invariants are checked over every probe's attempts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import time
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console

from errortext.console_text import one_line
from errortext.validation import describe
from loadtests.channels import default_channels
from loadtests.cli.args import positive_float, positive_int
from loadtests.cli.console import console as cli_console
from loadtests.errors import HarnessError, UsageError
from loadtests.meta import git_commit, new_key_prefix, versions
from loadtests.orchestration import preflight
from loadtests.orchestration.capacity_probe import judge_probe, merge_probe
from loadtests.orchestration.capacity_search import Probe, SearchResult, find_knee
from loadtests.orchestration.locust_process import STOP_GRACE_S, locust_command, run_locust
from loadtests.orchestration.run_folder import conclude, new_run_dir
from loadtests.orchestration.scenario_file import write_scenario
from loadtests.orchestration.session import (
    GatewayChoice,
    check_before_start,
    choose_gateway,
    gateway_session,
    stoppable,
)
from loadtests.orchestration.stopping import Interrupt, Interrupted
from loadtests.scenario.files import load_scenario, validated_scenario
from loadtests.scenario.model import Scenario
from loadtests.scenario.profile import TargetProfile, check_settlement, load_profile, target_meta
from runfolder.events import RunEvent
from runfolder.layout import RunFolder, read_window_records, write_json
from runfolder.models import Capacity, GeneratorVerdict, RunMeta, Slo, read_generator
from runfolder.steps import CapacityStep, write_steps_csv

PROBE_START_MARGIN_S = 2.5  # the cluster is up already: only Locust itself boots before each probe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="search this gateway instead of the embedded cluster")
    parser.add_argument("--target", type=Path, help="a target profile TOML: search another repayment API (§7)")
    parser.add_argument("--allow-remote", action="store_true", help="allow a --host that is not loopback")
    parser.add_argument("--config", type=Path, help="gateway config TOML for the embedded cluster")
    parser.add_argument("--out", help="the run folder (default runs/<UTC timestamp>-capacity)")
    parser.add_argument(
        "--scenario-base",
        default="capacity-step",
        help="scenario lending the probes its population, client, gateway table and SLOs",
    )
    parser.add_argument("--start-rate", type=positive_float, default=50.0, help="first probe, arrivals/s")
    parser.add_argument("--max-rate", type=positive_float, default=5000.0, help="search ceiling, arrivals/s")
    parser.add_argument("--growth", type=positive_float, default=1.5, help="step-up factor (default 1.5)")
    parser.add_argument("--precision", type=positive_float, default=0.05, help="bracket width (default 0.05)")
    parser.add_argument("--probe-s", type=positive_float, default=8.0, help="measured seconds per probe")
    parser.add_argument("--warmup-s", type=positive_float, default=2.0, help="unmeasured seconds per probe")
    parser.add_argument("--repeats", type=int, default=2, help="repetitions of the best rate (spread)")
    parser.add_argument("--slo-p99-ms", type=positive_float, help="override the base scenario's max_p99_ms")
    parser.add_argument("--slo-success", type=positive_float, help="override min_success_ratio (0..1)")
    parser.add_argument(
        "--arrivals",
        choices=["even", "poisson"],
        default="even",
        help="probe arrival process: even measures the sustained cap, poisson adds realistic clumping",
    )
    parser.add_argument("--workers", type=positive_int, default=1, help="Locust worker processes")
    parser.add_argument(
        "--replicas", type=positive_int, help=f"embedded cluster replicas (default {preflight.DEFAULT_REPLICAS})"
    )


def run(args: argparse.Namespace) -> int:
    base = _probe_base(args)
    profile = None
    if args.target is not None:  # its base_url (or --host) is the gateway surge did not start
        profile = load_profile(args.target, allow_remote=args.allow_remote, host=args.host, env=os.environ)
        check_settlement(profile, base.client.settlement)
        args = argparse.Namespace(**{**vars(args), "host": profile.base_url})
    gateway = choose_gateway(args, base.gateway_overrides())
    console = cli_console(stderr=True, highlight=False)
    check_before_start(
        gateway,
        args,
        base,
        lambda warning: console.print(f"surge find-capacity: warning: {one_line(warning)}", markup=False),
    )
    run_dir = new_run_dir(args.out, "capacity")
    console.print(
        f"surge find-capacity from {args.start_rate:g}/s (base {one_line(base.name)}) → {one_line(run_dir)}",
        markup=False,
    )
    return stoppable(
        "surge find-capacity",
        run_dir,
        lambda interrupt: _search(args, base, gateway, run_dir, console, profile, interrupt),
        lambda result, interrupt: _conclude(run_dir, result, interrupt),
    )


def _conclude(run_dir: Path, result: SearchResult | None, interrupt: Interrupt) -> int:
    """capacity.json and the report. A search cut short (`result` None) claims no capacity: the probes that
    finished are analysed as far as they go, with `limited_by: "interrupted"`."""
    from loadtests.cli.verdict_table import finish  # the report stack: loaded once there is a folder to report

    if result is None:
        probes = len(list((run_dir / "probes").iterdir())) if (run_dir / "probes").is_dir() else 0
        capacity = Capacity(max_rate_per_s=None, spread=None, limited_by="interrupted", bracket=None, probes=probes)
        write_json(RunFolder(run_dir).capacity, capacity)
        return finish(
            conclude(run_dir, None), run_dir, f"capacity: unknown (search {interrupt.reason} after {probes} probes)"
        )
    capacity = Capacity(
        max_rate_per_s=round(result.max_rate_per_s, 1),
        spread=round(result.spread, 4),
        limited_by=result.limited_by,
        bracket=list(result.bracket) if result.bracket else None,
        probes=len(result.probes),
    )
    write_json(RunFolder(run_dir).capacity, capacity)
    spread = f"spread {result.spread:.1%}, limited by {result.limited_by}"
    return finish(conclude(run_dir, None), run_dir, f"capacity: {result.max_rate_per_s:.0f}/s ({spread})")


def _probe_base(args: argparse.Namespace) -> Scenario:
    """The base scenario with the command line's SLO overrides and without faults, validated like a scenario
    file: `--slo-success 1.5` is a usage error (exit 2) naming the option, before anything starts."""
    base = load_scenario(args.scenario_base)
    options = {"max_p99_ms": "--slo-p99-ms", "min_success_ratio": "--slo-success"}
    given = {"max_p99_ms": args.slo_p99_ms, "min_success_ratio": args.slo_success}
    overrides = {key: value for key, value in given.items() if value is not None}
    try:
        slo = Slo.model_validate(base.slo.model_dump() | overrides)
    except ValidationError as exc:
        raise UsageError(describe(exc, keys=options)) from None
    return validated_scenario(base, slo=slo, faults=[])


async def _search(
    args: argparse.Namespace,
    base: Scenario,
    gateway: GatewayChoice,
    run_dir: Path,
    console: Console,
    profile: TargetProfile | None,
    interrupt: Interrupt,
) -> SearchResult | None:
    """The knee search inside the gateway session; None when a signal cut it short."""
    from loadtests.orchestration.target_ledger import copy_target_ledger  # SQLAlchemy: once the search starts

    async with gateway_session(gateway, run_dir, interrupt) as session:
        started = session.start_unix = time.time()
        meta = _capacity_meta(args, base, session.target, gateway, started)
        if profile is not None:
            meta = meta.model_copy(update={"target": target_meta(profile, args.target, default_channels(base))})
        write_json(RunFolder(run_dir).meta, meta)
        steps: list[CapacityStep] = []
        loop = asyncio.get_running_loop()

        def probe(rate: float) -> Probe:
            if interrupt.requested:
                raise Interrupted
            step = len(steps) + 1
            console.print(f"probe {step}: {rate:.1f}/s …", end=" ")
            result, window, probe_start = asyncio.run_coroutine_threadsafe(
                _probe(args, base, session.target, run_dir, step, rate, interrupt), loop
            ).result()
            offset = round(probe_start - started)
            merge_probe(run_dir / "probes" / f"{step:02d}", run_dir, offset, step)
            session.events.append(RunEvent(probe_start, "capacity", "probe_start", f"{rate:.1f}/s", f"step {step}"))
            verdict = "pass" if result.passed else f"FAIL ({result.limited_by})"
            console.print(
                f"goodput {result.goodput:.1f}/s, success {result.success_ratio:.3f}, "
                f"p99 {result.p99_ms:.0f} ms: {verdict}"
            )
            steps.append(
                CapacityStep(
                    step=step,
                    rate_per_s=round(rate, 2),
                    start_s=round(offset + window[0], 1),
                    end_s=round(offset + window[1], 1),
                    offered=round(result.offered, 2),
                    goodput=round(result.goodput, 2),
                    success_ratio=round(result.success_ratio, 5),
                    p99_ms=round(result.p99_ms, 1),
                    passed=result.passed,
                    limited_by=result.limited_by,
                )
            )
            write_steps_csv(RunFolder(run_dir).steps, steps)
            return result

        try:
            result = await asyncio.to_thread(
                find_knee,
                probe,
                start_rate=args.start_rate,
                max_rate=args.max_rate,
                growth=args.growth,
                precision=args.precision,
                repeats=max(0, args.repeats),
            )
        except Interrupted:
            return None
        if profile is not None and profile.ledger is not None:
            rows = copy_target_ledger(profile.ledger, os.environ, run_dir)
            console.print(
                f"ledger: {rows} rows copied from {one_line(profile.name)}'s ledger into "
                f"{one_line(run_dir / 'ledger.sqlite')}",
                markup=False,
            )
        return result


async def _probe(
    args: argparse.Namespace,
    base: Scenario,
    target: str,
    run_dir: Path,
    step: int,
    rate: float,
    interrupt: Interrupt,
) -> tuple[Probe, tuple[float, float], float]:
    """One steady probe in its own folder; its verdict, measured window and wall start."""
    probe_dir = run_dir / "probes" / f"{step:02d}"
    probe_dir.mkdir(parents=True)
    # the locustfile reads the gateway's channels (meta.json) and simulated clock (cluster/) from its folder
    shutil.copyfile(RunFolder(run_dir).meta, RunFolder(probe_dir).meta)
    if (run_dir / "cluster").is_dir():
        (probe_dir / "cluster").symlink_to(run_dir / "cluster", target_is_directory=True)
    duration = args.warmup_s + args.probe_s
    scenario_file = probe_dir / "scenario.toml"
    scenario = validated_scenario(
        base,
        name=f"capacity-probe-{step:02d}",
        description=f"steady {rate:.1f}/s",
        duration_s=duration,
        seed=base.seed + step,
        rate=[{"at_s": 0.0, "per_s": rate}, {"at_s": duration, "per_s": rate}],
        arrivals=base.arrivals.model_dump()
        | {"pool": max(base.arrivals.pool, int(rate * 2)), "process": args.arrivals},
    )
    write_scenario(scenario, scenario_file)
    start = time.time() + PROBE_START_MARGIN_S + 0.5 * args.workers
    command = locust_command(
        scenario_ref=str(scenario_file),
        scale=1.0,
        duration_s=duration,
        target=target,
        run_dir=probe_dir,
        start_unix=start,
        workers=args.workers,
        target_profile=args.target,
        abort=False,  # a probe overloads the gateway on purpose
    )
    rc = await run_locust(
        command,
        probe_dir,
        deadline_unix=start + duration + STOP_GRACE_S + 30,
        allow_remote=args.allow_remote,
        interrupt=interrupt,
        start_unix=start,
    )
    if interrupt.requested:
        raise Interrupted  # the probe was cut short: it measured nothing the search could use
    windows = read_window_records(probe_dir)
    if rc is None or not windows:
        raise HarnessError(f"probe {step} at {rate:.1f}/s recorded nothing (Locust exit {rc}); see {probe_dir}")
    valid = (read_generator(probe_dir) or GeneratorVerdict()).valid
    result, window = judge_probe(
        windows,
        rate,
        warmup_s=args.warmup_s,
        end_s=duration,
        generator_valid=valid,
        min_success=base.slo.min_success_ratio,
        max_p99_ms=base.slo.max_p99_ms,
    )
    return result, window, start


def _capacity_meta(
    args: argparse.Namespace, base: Scenario, target: str, gateway: GatewayChoice, started: float
) -> RunMeta:
    """meta.json of a capacity search (internals §6): the base scenario's SLOs judge every probe; no phases,
    spikes or faults, and no rate curve (each probe has its own, in its scenario.toml)."""
    return RunMeta(
        kind="capacity",
        scenario="capacity",
        description=f"knee search on {base.name}: {args.probe_s:g} s probes after a warm-up",
        scenario_ref=args.scenario_base,
        seed=base.seed,
        key_prefix=new_key_prefix(),
        scale=1.0,
        duration_s=None,
        started_unix=started,
        host=target,
        embedded=gateway.embedded,
        workers=args.workers,
        replicas=gateway.replicas_for_meta,
        versions=versions(),
        git_commit=git_commit(),
        gateway_config=gateway.config,
        slo=base.slo,
        phases=[],
        spikes=[],
        faults=[],
        client_policy=base.client.policy,
        rate=[],
    )
