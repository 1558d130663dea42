"""`surge study STUDY [--out DIR] [--repeat N]`: one scenario under several variants, on one page (docs/study.md).

Each variant is a whole `surge run` of its own (fresh embedded cluster, fresh ledger, the scenario's seed) into
DIR/<variant>/ — N of them with `--repeat N`, seeds varied per repetition, into DIR/<variant>/run-<k>/; then
DIR/study.json and DIR/study.html. The exit code is the worst run's; a bad study file is exit 2 before anything
starts.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from errortext.console_text import one_line
from loadtests.cli import run as run_command
from loadtests.cli.args import positive_float, positive_int
from loadtests.cli.console import console as cli_console
from loadtests.orchestration.stopping import StoppedBySignal
from loadtests.orchestration.study import VariantPlan, plan_study, run_study, study_header
from loadtests.scenario.study import load_study
from runfolder.stop import read_stop
from runfolder.verdict import worst_exit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", help="a built-in study (see `surge studies`) or a study TOML file")
    parser.add_argument("--out", help="the study folder (default runs/<UTC timestamp>-study-<name>)")
    parser.add_argument("--scale", type=positive_float, help="override the study's scale")
    parser.add_argument("--duration", type=positive_float, help="override the scenario's duration in seconds")
    parser.add_argument("--workers", type=positive_int, default=1, help="Locust worker processes (default 1)")
    parser.add_argument(
        "--repeat",
        type=positive_int,
        default=1,
        help="run every variant N times, seeds seed..seed+N-1 (the same for every variant); a winner is named "
        "only when its range over the runs clears the runner-up's (default 1: no winner named)",
    )


def run(args: argparse.Namespace) -> int:
    study, scenario = load_study(args.study)
    out = Path(args.out) if args.out else _default_out(study.name)
    plans = plan_study(study, scenario, out, scale=args.scale, duration_s=args.duration, repeat=args.repeat)
    header = study_header(study, scenario, plans)
    console = cli_console(stderr=True)
    runs = f" x {args.repeat} runs" if args.repeat > 1 else ""
    console.print(
        f"surge study {one_line(study.name)}: {len(study.variants)} variants{runs} of {one_line(scenario.name)}"
        f" → {one_line(out)}",
        markup=False,
    )

    def run_variant(plan: VariantPlan) -> int:
        """The variant as `surge run` would run it from its own command line (so every later option of
        `surge run` gets its default here too)."""
        title = escape(f"variant {one_line(plan.name)}" + (f", run {plan.repetition}" if args.repeat > 1 else ""))
        if console.is_terminal:
            console.rule(title)
        else:
            console.print(f"── {title} ──")  # a log: one short line, not a rule LOG_WIDTH wide
        argv = [str(plan.scenario_path), "--scale", repr(plan.scale), "--replicas", str(plan.replicas)]
        argv += ["--out", str(plan.run_dir), "--workers", str(args.workers)]
        if plan.duration_s is not None:
            argv += ["--duration", repr(plan.duration_s)]
        run_parser = argparse.ArgumentParser(prog="surge run")
        run_command.add_arguments(run_parser)
        code = run_command.run(run_parser.parse_args(argv))
        stop = read_stop(plan.run_dir)
        if stop is not None and stop.by in ("sigint", "sigterm"):
            raise StoppedBySignal(stop.by)  # `surge run` stopped cleanly on it; the study starts no further variant
        return code

    finished = run_study(header, plans, out, run_variant)
    from loadtests.cli.github_summary import publish_study  # the report stack, loaded by the study's page already
    from reports.study.ranking import variant_rows

    rows = variant_rows(finished)
    _print_table(rows, cli_console())
    publish_study({**header, "variants": rows})  # GitHub Actions' job summary; nothing outside CI
    print(f"study: {one_line((out / 'study.html').resolve())}")
    return worst_exit(int(row["exit_code"]) for row in rows)


def _default_out(name: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:60] or "study"
    return Path("runs") / f"{stamp}-study-{safe}"


def _print_table(rows: list[dict[str, Any]], console: Console) -> None:
    from reports.render.shared import percent
    from reports.violations import yuan

    table = Table(title="study")
    for column in ("variant", "bills", "completed", "repaid", "429", "503", "p99 ms", "verdict"):
        table.add_column(column, justify="left" if column in ("variant", "verdict") else "right")
    for row in rows:
        table.add_row(
            escape(one_line(row["name"])) + ("" if row["valid"] else " (invalid)"),
            _fmt(row.get("payments"), "{:,}"),
            percent(row.get("completed_ratio")),
            yuan(row.get("amount_repaid_fen")),
            percent(row.get("rate_limited_share")),
            percent(row.get("shed_share")),
            _fmt(row.get("p99_ms"), "{:,.0f}"),
            f"{row.get('verdict') or 'unknown'} (exit {row['exit_code']})",
        )
    console.print(table)


def _fmt(value: Any, pattern: str) -> str:
    return "—" if value is None else pattern.format(value)
