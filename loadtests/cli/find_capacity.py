"""`surge find-capacity`: the highest arrival rate that still meets the SLOs — the knee.

Each probe is a short steady run of the locustfile at one rate against the same gateway (the embedded cluster
is started once for the whole search). The search itself is `capacity_search.find_knee`; the probes' windows
and histories are gathered on one time axis into a run folder (docs/internals.md §6) that `reports` turns into
summary.json and a report with the offered-vs-goodput curve.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from loadtests.cli.args import positive_float, positive_int
from loadtests.cli.github_summary import publish_run
from loadtests.cli.verdict_table import print_verdicts
from loadtests.errors import HarnessError
from loadtests.orchestration import preflight
from loadtests.orchestration.capacity_probe import judge, merge_probe, read_windows
from loadtests.orchestration.capacity_search import Probe, SearchResult, find_knee
from loadtests.orchestration.embedded import start_cluster, stop_and_collect, validated_config
from loadtests.orchestration.locust_process import STOP_GRACE_S, locust_command, run_locust
from loadtests.orchestration.run_folder import (
    Event,
    analyse,
    new_run_dir,
    write_events_csv,
    write_json,
)
from loadtests.scenario.meta import git_commit, new_key_prefix, versions
from loadtests.scenario.scenario_file import write_scenario
from loadtests.scenario.shapes import RatePoint, Scenario, load_scenario
from loadtests.scenario.targets import check_target
from mock_gateway.cluster.handle import ClusterProcess

PROBE_START_MARGIN_S = 2.5  # the cluster is up already: only Locust itself boots before each probe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="search this gateway instead of the embedded cluster")
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
    base = load_scenario(args.scenario_base)
    host = check_target(args.host, allow_remote=args.allow_remote) if args.host else None
    slo = base.slo.model_copy(
        update={
            key: value
            for key, value in (("max_p99_ms", args.slo_p99_ms), ("min_success_ratio", args.slo_success))
            if value is not None
        }
    )
    base = base.model_copy(update={"slo": slo, "faults": ()})
    if not 0 < slo.min_success_ratio <= 1:
        raise HarnessError("--slo-success must be within (0, 1]")
    console = Console(stderr=True)
    gateway_config = validated_config(args.config, base.gateway) if host is None else None
    if host is not None:
        for warning in preflight.host_conflicts(args, base):
            console.print(f"surge find-capacity: warning: {warning}", markup=False, highlight=False)
        preflight.check_reachable(host)
    args.replicas = args.replicas or preflight.DEFAULT_REPLICAS
    run_dir = new_run_dir(args.out, "capacity")
    console.print(f"surge find-capacity from {args.start_rate:g}/s (base {base.name}) → {run_dir}")
    result = asyncio.run(_search(args, base, host, gateway_config, run_dir, console))
    write_json(
        run_dir / "capacity.json",
        {
            "max_rate_per_s": round(result.max_rate_per_s, 1),
            "spread": round(result.spread, 4),
            "limited_by": result.limited_by,
            "bracket": list(result.bracket) if result.bracket else None,
            "probes": len(result.probes),
        },
    )
    summary = analyse(run_dir, None)
    print_verdicts(summary, Console())
    publish_run(summary, run_dir)
    spread = f"spread {result.spread:.1%}, limited by {result.limited_by}"
    print(f"capacity: {result.max_rate_per_s:.0f}/s ({spread})")
    print(f"report: {(run_dir / 'report.html').resolve()}")
    exit_code: int = summary["exit_code"]
    return exit_code


async def _search(
    args: argparse.Namespace,
    base: Scenario,
    host: str | None,
    gateway_config: dict[str, Any] | None,
    run_dir: Path,
    console: Console,
) -> SearchResult:
    cluster: ClusterProcess | None = None
    started = time.time()
    events: list[Event] = []
    try:
        if host is None:
            cluster = await start_cluster(args.config, args.replicas, run_dir / "cluster", base.gateway)
        target = cluster.url if cluster is not None else str(host)
        started = time.time()
        _write_meta(run_dir, args, base, target, gateway_config, started)
        steps: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()

        def probe(rate: float) -> Probe:
            step = len(steps) + 1
            console.print(f"probe {step}: {rate:.1f}/s …", end=" ")
            result, window, probe_start = asyncio.run_coroutine_threadsafe(
                _probe(args, base, target, run_dir, step, rate), loop
            ).result()
            offset = round(probe_start - started)
            merge_probe(run_dir / "probes" / f"{step:02d}", run_dir, offset, step)
            events.append(Event(probe_start, "capacity", "probe_start", f"{rate:.1f}/s", f"step {step}"))
            verdict = "pass" if result.passed else f"FAIL ({result.limited_by})"
            console.print(
                f"goodput {result.goodput:.1f}/s, success {result.success_ratio:.3f}, "
                f"p99 {result.p99_ms:.0f} ms: {verdict}"
            )
            steps.append(
                {
                    "step": step,
                    "rate_per_s": round(rate, 2),
                    "start_s": round(offset + window[0], 1),
                    "end_s": round(offset + window[1], 1),
                    "offered": round(result.offered, 2),
                    "goodput": round(result.goodput, 2),
                    "success_ratio": round(result.success_ratio, 5),
                    "p99_ms": round(result.p99_ms, 1),
                    "passed": result.passed,
                    "limited_by": result.limited_by,
                }
            )
            _write_steps(run_dir / "steps.csv", steps)
            return result

        return await asyncio.to_thread(
            find_knee,
            probe,
            start_rate=args.start_rate,
            max_rate=args.max_rate,
            growth=args.growth,
            precision=args.precision,
            repeats=max(0, args.repeats),
        )
    finally:
        if cluster is not None:
            events.extend(await stop_and_collect(cluster, run_dir))
        write_events_csv(run_dir / "events.csv", started, events)


async def _probe(
    args: argparse.Namespace, base: Scenario, target: str, run_dir: Path, step: int, rate: float
) -> tuple[Probe, tuple[float, float], float]:
    """One steady probe in its own folder; its verdict, measured window and wall start."""
    probe_dir = run_dir / "probes" / f"{step:02d}"
    probe_dir.mkdir(parents=True)
    # the locustfile reads the gateway's channels (meta.json) and simulated clock (cluster/) from its folder
    shutil.copyfile(run_dir / "meta.json", probe_dir / "meta.json")
    if (run_dir / "cluster").is_dir():
        (probe_dir / "cluster").symlink_to(run_dir / "cluster", target_is_directory=True)
    duration = args.warmup_s + args.probe_s
    scenario_file = probe_dir / "scenario.toml"
    scenario = base.model_copy(
        update={
            "name": f"capacity-probe-{step:02d}",
            "description": f"steady {rate:.1f}/s",
            "duration_s": duration,
            "seed": base.seed + step,
            "rate": (RatePoint(at_s=0.0, per_s=rate), RatePoint(at_s=duration, per_s=rate)),
            "arrivals": base.arrivals.model_copy(
                update={"pool": max(base.arrivals.pool, int(rate * 2)), "process": args.arrivals}
            ),
        }
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
    )
    rc = await run_locust(
        command, probe_dir, deadline_unix=start + duration + STOP_GRACE_S + 30, allow_remote=args.allow_remote
    )
    windows = read_windows(probe_dir)
    if rc is None or not windows:
        raise HarnessError(f"probe {step} at {rate:.1f}/s recorded nothing (Locust exit {rc}); see {probe_dir}")
    generator = probe_dir / "generator.json"
    valid = bool(json.loads(generator.read_text())["valid"]) if generator.exists() else True
    result, window = judge(
        windows,
        rate,
        warmup_s=args.warmup_s,
        end_s=duration,
        generator_valid=valid,
        min_success=base.slo.min_success_ratio,
        max_p99_ms=base.slo.max_p99_ms,
    )
    return result, window, start


def _write_steps(path: Path, steps: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(steps[0]))
        writer.writeheader()
        writer.writerows(steps)


def _write_meta(
    run_dir: Path,
    args: argparse.Namespace,
    base: Scenario,
    target: str,
    gateway_config: dict[str, Any] | None,
    started: float,
) -> None:
    write_json(
        run_dir / "meta.json",
        {
            "kind": "capacity",
            "scenario": "capacity",
            "description": f"knee search on {base.name}: {args.probe_s:g} s probes after a warm-up",
            "seed": base.seed,
            "key_prefix": new_key_prefix(),
            "scale": 1.0,
            "duration_s": None,
            "started_unix": started,
            "host": target,
            "embedded": gateway_config is not None,
            "workers": args.workers,
            "replicas": args.replicas if gateway_config is not None else None,
            "versions": versions(),
            "git_commit": git_commit(),
            "gateway_config": gateway_config,
            "slo": base.slo.model_dump(),
            "phases": [],
            "spikes": [],
            "faults": [],
            "client_policy": base.client.policy,
        },
    )
