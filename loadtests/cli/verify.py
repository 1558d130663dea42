"""`surge verify RUN_DIR`: re-check lost / phantom / duplicate / over-cap against the run's ledger copy.

Exit 0 when every invariant holds, 1 when one does not, 3 when none failed but one could not be checked
(over_cap without the caps: unknown), 2 when the folder is not a run folder or has no ledger.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from errortext.console_text import one_line
from loadtests.cli.console import console as cli_console
from loadtests.errors import UsageError
from runfolder.layout import RunFolderError
from runfolder.models import read_meta
from runfolder.verdict import format_value, merge


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run folder with ledger.sqlite")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    try:  # a run folder at all, before the report stack (pandas) loads
        read_meta(args.run_dir)
    except RunFolderError as exc:
        raise UsageError(str(exc)) from exc
    from loadtests.cli.verdict_table import verdict_cell
    from reports.verify import verify_run

    try:
        result = verify_run(args.run_dir)
    except RunFolderError as exc:
        raise UsageError(str(exc)) from exc
    if args.json:
        verdicts = [verdict.model_dump() for verdict in result["verdicts"]]
        print(json.dumps({**result, "verdicts": verdicts}, indent=2, ensure_ascii=False))
        return merge(result["verdicts"])
    table = Table(title=escape(one_line(f"invariants of {args.run_dir}")))
    for column in ("invariant", "violations", "bound", "verdict"):
        table.add_column(column)
    for verdict in result["verdicts"]:
        table.add_row(verdict.name, format_value(verdict.value), str(verdict.bound), verdict_cell(verdict))
    console = cli_console()
    console.print(table)
    _print_violations(console, result)
    outcomes = result["outcomes"]
    console.print(
        f"payment keys: {outcomes['ok']} acknowledged, {outcomes['failed']} definitely not recorded, "
        f"{outcomes['unknown']} unknown (either way is correct)",
        highlight=False,
    )
    if result["other_rows"]:
        console.print(
            f"{result['other_rows']} ledger rows belong to other runs (another key prefix) and were left out",
            highlight=False,
        )
    return merge(result["verdicts"])


def _print_violations(console: Console, result: dict[str, Any]) -> None:
    """One line per violation, never wrapped nor cut: a key is copied from here into a ledger query, and a
    non-TTY console (a CI log, a pipe) is only 80 columns wide."""
    from reports.violations import yuan

    for violation in result["described"]:
        amount = "—" if violation["amount_fen"] is None else yuan(violation["amount_fen"])
        console.print(
            one_line(
                f"{violation['invariant']}: key {violation['key']} · card {violation['card']} · {amount} · "
                f"client saw {violation['client_saw']} · ledger holds {violation['ledger_holds']}"
            ),
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
    if result["more"]:
        console.print(f"… and {result['more']} more violations: --json lists every one", highlight=False)
