"""`surge compare BASE_RUN CANDIDATE_RUN`: console table + HTML page; exit 1 when the candidate regresses.

Both runs are compared on the figures they were measured with when they finished (summary.json, timeseries.csv:
`runfolder.figures`), never re-measured; a folder that never finished is a usage error saying how to finish it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

from errortext.console_text import one_line
from loadtests.cli.console import console as cli_console
from loadtests.errors import UsageError
from reports.comparable import Tolerances, unlike, unlike_line
from runfolder.figures import read_figures
from runfolder.layout import RunFolderError


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number (got {text!r})") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"must be >= 0 (got {text})")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Tolerances()
    parser.add_argument("base", metavar="BASE_RUN", type=Path, help="the baseline run folder")
    parser.add_argument("candidate", metavar="CANDIDATE_RUN", type=Path, help="the run folder under test")
    parser.add_argument(
        "--throughput-tol",
        type=_non_negative,
        default=defaults.throughput_pct,
        metavar="PCT",
        help=f"allowed goodput drop in %% (default {defaults.throughput_pct:g})",
    )
    parser.add_argument(
        "--p99-tol",
        type=_non_negative,
        default=defaults.p99_pct,
        metavar="PCT",
        help=f"allowed p99 rise in %% (default {defaults.p99_pct:g})",
    )
    parser.add_argument(
        "--success-tol",
        type=_non_negative,
        default=defaults.success_points,
        metavar="POINTS",
        help=f"allowed success-ratio drop in percentage points (default {defaults.success_points:g})",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="give a verdict even when the runs are not like for like (other scenario, scale, seed, config)",
    )
    parser.add_argument(
        "--html",
        type=Path,
        metavar="FILE",
        help="where to write the HTML comparison (default CANDIDATE_RUN/comparison.html)",
    )


def run(args: argparse.Namespace) -> int:
    tolerances = Tolerances(args.throughput_tol, args.p99_tol, args.success_tol)
    if args.html is not None and not args.html.parent.is_dir():
        raise UsageError(f"--html {args.html}: the folder {args.html.parent} does not exist")
    try:  # both finished run folders, and like for like, before the report stack (pandas, plotly) loads
        base, candidate = read_figures(args.base), read_figures(args.candidate)
    except RunFolderError as exc:
        raise UsageError(str(exc)) from exc
    console = cli_console()
    differences = unlike(base.meta, candidate.meta)
    if differences and not args.force:
        raise UsageError(f"{unlike_line(differences)}: no verdict; pass --force to compare them anyway")
    if differences:
        console.print(f"[yellow]warning:[/yellow] {escape(one_line(unlike_line(differences)))}", highlight=False)
    from loadtests.cli.github_summary import publish_comparison
    from reports.compare import compare, console_table
    from reports.render.page import render_comparison

    comparison = compare(base, candidate, tolerances)
    target = args.html or args.candidate / "comparison.html"
    try:
        target.write_text(render_comparison(comparison), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--html {target}: {exc.strerror}") from None
    console.print(console_table(comparison))
    verdict = "[bold red]REGRESSED[/bold red]" if comparison.regressed else "[green]no regression[/green]"
    console.print(f"{verdict} · {escape(one_line(target))}", highlight=False)
    publish_comparison(comparison)
    return 1 if comparison.regressed else 0
