"""`surge run SCENARIO`: one whole load test, from scenario to verdict (README, docs/scenarios.md).

The order is the whole job of this module: validate everything first (exit 2 with nothing started, and nothing
of the cluster's or the report's stack loaded: a usage error answers in a fraction of the time), then hand the
run to `orchestration.one_run` inside a stoppable session, and only then the folder to `reports`.

Ctrl-C or SIGTERM ends the same way, early: the folder and report are written as far as the run got, and the exit
code is 130 or 143; a second signal skips the report but still stops every process.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from rich.console import Console

from errortext.console_text import one_line
from loadtests.channels import ChannelsUnavailable, served_channels
from loadtests.cli.args import MAX_SCALE, port_number, positive_float, positive_int, scale_factor
from loadtests.cli.console import console as cli_console
from loadtests.cli.console import status_line
from loadtests.errors import UsageError
from loadtests.orchestration import preflight
from loadtests.orchestration.locust_process import MASTER_PORT
from loadtests.orchestration.run_folder import conclude, new_run_dir
from loadtests.orchestration.session import check_before_start, choose_gateway, stoppable
from loadtests.scenario.credentials import certificate_expiry
from loadtests.scenario.files import load_scenario
from loadtests.scenario.model import Scenario
from loadtests.scenario.profile import TargetProfile, check_settlement, load_profile
from runfolder.figures import Figures, read_figures
from runfolder.layout import RunFolderError

LOST_KEYS_SHOWN = 20
HOSTS_WAIT_S = 15.0  # --hosts: the workers' time to connect; t=0 is planned past it
MAX_CLOCK_OFFSET_S = 5.0  # the locustfile's own default too (docs/distributed.md, "Clocks")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", help="a built-in scenario name (see `surge scenarios`) or a TOML file")
    parser.add_argument(
        "--scale",
        type=scale_factor,
        default=1.0,
        help=f"multiply every rate and the user pool (default 1, at most {MAX_SCALE:g})",
    )
    parser.add_argument("--duration", type=positive_float, help="override the scenario's duration in seconds")
    parser.add_argument("--host", help="load this gateway instead of starting the embedded cluster")
    parser.add_argument("--allow-remote", action="store_true", help="allow a --host that is not loopback")
    parser.add_argument("--config", type=Path, help="gateway config TOML for the embedded cluster")
    parser.add_argument("--workers", type=positive_int, default=1, help="Locust worker processes (default 1)")
    parser.add_argument(
        "--hosts",
        type=positive_int,
        default=0,
        metavar="N",
        help="a distributed run: wait for N `surge worker` processes on other hosts instead of local --workers",
    )
    parser.add_argument(
        "--master-bind",
        default="127.0.0.1",
        metavar="ADDR",
        help="with --hosts: the address workers connect to (default 127.0.0.1)",
    )
    parser.add_argument(
        "--master-port", type=port_number, default=MASTER_PORT, help=f"with --hosts: its port (default {MASTER_PORT})"
    )
    parser.add_argument(
        "--hosts-wait",
        type=positive_float,
        default=HOSTS_WAIT_S,
        metavar="S",
        help=f"with --hosts: how long the workers have to connect (default {HOSTS_WAIT_S:g} s)",
    )
    parser.add_argument(
        "--max-clock-offset",
        type=positive_float,
        default=MAX_CLOCK_OFFSET_S,
        metavar="S",
        help=f"with --hosts: refuse (exit 3) a worker whose clock is further off (default {MAX_CLOCK_OFFSET_S:g} s)",
    )
    parser.add_argument(
        "--replicas", type=positive_int, help=f"embedded cluster replicas (default {preflight.DEFAULT_REPLICAS})"
    )
    parser.add_argument("--out", help="the run folder (default runs/<UTC timestamp>-<scenario>)")
    parser.add_argument("--baseline", type=Path, help="a previous run folder to compare against in the report")
    parser.add_argument("--target", type=Path, help="a target profile TOML: drive another repayment API (§7)")
    parser.add_argument("--no-abort", action="store_true", help="ignore the scenario's [[abort]] rules for this run")
    parser.add_argument(
        "--metrics-port",
        type=port_number,
        default=0,
        metavar="PORT",
        help="serve live Prometheus metrics on 127.0.0.1:PORT during the run (default: off)",
    )


def run(args: argparse.Namespace) -> int:
    if args.hosts and args.workers > 1:
        raise UsageError("--hosts and --workers exclude each other: workers run on this host or on others")
    scenario = load_scenario(args.scenario).scaled(args.scale, args.duration)
    profile = None
    if args.target is not None:  # its base_url (or --host) is the gateway surge did not start
        profile = load_profile(args.target, allow_remote=args.allow_remote, host=args.host, env=os.environ)
        check_settlement(profile, scenario.client.settlement)
        args = argparse.Namespace(**{**vars(args), "host": profile.base_url})
    gateway = choose_gateway(args, scenario.gateway_overrides())
    baseline = None if args.baseline is None else _baseline(args.baseline)
    console = cli_console(stderr=True, highlight=False)
    check_before_start(
        gateway, args, scenario, lambda warning: console.print(f"surge run: warning: {one_line(warning)}", markup=False)
    )
    expired = None if profile is None or profile.tls.cert_file is None else certificate_expiry(profile.tls.cert_file)
    if expired is not None:  # the run goes on: the target's refusal is then reported as such (TLS_FAILED)
        console.print(f"surge run: warning: tls.cert_file expired on {expired:%Y-%m-%d %H:%M} UTC", markup=False)
    # every argument held: only now does the run's own stack load (the cluster's aiohttp, SQLAlchemy, pandas,
    # plotly), so a refusal above answers without paying for it
    from loadtests.orchestration.one_run import orchestrate

    run_dir = new_run_dir(args.out, scenario.name)
    console.print(
        f"surge run {one_line(scenario.name)} (scale {args.scale:g}, {scenario.duration_s:g} s) → {one_line(run_dir)}",
        markup=False,
    )
    if not gateway.embedded and profile is None:
        _warn_without_channels(str(gateway.host), console)
    return stoppable(
        "surge run",
        run_dir,
        lambda interrupt: orchestrate(
            args, scenario, gateway, run_dir, console, profile, interrupt, lambda: status_line(console)
        ),
        lambda _, __: _finish(run_dir, baseline, scenario, profile),
    )


def _baseline(path: Path) -> Figures:
    """--baseline: the finished run's figures, read before anything starts (a folder that cannot be compared is a
    usage error now, not a failed finish after the whole run)."""
    try:
        return read_figures(path)
    except RunFolderError as exc:
        raise UsageError(f"--baseline: {exc}") from None


def _finish(run_dir: Path, baseline: Figures | None, scenario: Scenario, profile: TargetProfile | None) -> int:
    """Measured and judged once (`conclude`: summary.json, junit.xml, report.html), then only printed."""
    from loadtests.cli.verdict_table import finish  # the report stack, past every check of the arguments

    summary = conclude(run_dir, baseline)
    return finish(summary, run_dir, *([] if profile is None else _target_notes(summary, scenario, profile)))


def _warn_without_channels(host: str, console: Console) -> None:
    """Against a gateway surge did not start, the driver reads GET /v1/channels; say now if it cannot."""
    try:
        served_channels(host)
    except ChannelsUnavailable as exc:
        console.print(f"surge run: warning: {one_line(exc)}; cards are drawn on the default channels", markup=False)


def _target_notes(summary: dict[str, Any], scenario: Scenario, profile: TargetProfile) -> list[str]:
    """What a target run adds to the verdict table, from its summary: where the invariants come from, lost keys
    by name, and that follow-plan could not follow a plan the target never offers."""
    notes = [
        f"credentials: {verdict['reason']}"  # apart from the service's errors
        for verdict in summary.get("run_verdicts") or []
        if verdict.get("name") == "credentials" and verdict.get("reason")
    ]
    lost = (summary.get("invariants") or {}).get("lost")
    if profile.ledger is None:
        notes.append("invariants: unknown (the profile has no [ledger] query)")
    elif lost:
        examples = ((summary.get("invariant_examples") or {}).get("lost") or [])[:LOST_KEYS_SHOWN]
        keys = ", ".join(str(item["key"]) for item in examples)
        more = f" and {lost - LOST_KEYS_SHOWN} more" if lost > LOST_KEYS_SHOWN else ""
        notes.append(
            f"lost payments (acknowledged, not in {one_line(profile.name)}'s ledger), by key: {one_line(keys)}{more}"
        )
    declined = int((summary.get("totals") or {}).get("declined", 0))
    if scenario.client.policy == "follow-plan" and declined:
        notes.append(
            f"follow-plan: {one_line(profile.name)} offers no suggested plan, so each of the {declined} declined "
            "attempts ended its payment"
        )
    return notes
