"""`surge verify RUN_DIR`: re-check lost / phantom / duplicate / over-cap against the run's ledger copy.

Exit 0 when every invariant holds, 1 when one does not, 2 when the folder is not a run folder or has no ledger.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from loadtests.errors import UsageError
from reports.runfolder import RunFolderError
from reports.verify import verify_run

EXAMPLES_SHOWN = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run folder with ledger.sqlite")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    try:
        result = verify_run(args.run_dir)
    except RunFolderError as exc:
        raise UsageError(str(exc)) from exc
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0 if result["passed"] else 1
    table = Table(title=escape(f"invariants of {args.run_dir}"))
    for column in ("invariant", "violations", "bound", "verdict", "examples"):
        table.add_column(column)
    for verdict in result["verdicts"]:
        examples = result["violations"][verdict["name"]][:EXAMPLES_SHOWN]
        table.add_row(
            verdict["name"],
            str(verdict["value"]),
            str(verdict["bound"]),
            "[green]ok[/green]" if verdict["passed"] else "[bold red]FAILED[/bold red]",
            escape("\n".join(json.dumps(example, ensure_ascii=False) for example in examples)),
        )
    console = Console()
    console.print(table)
    outcomes = result["outcomes"]
    console.print(
        f"payment keys: {outcomes['ok']} acknowledged, {outcomes['failed']} definitely not recorded, "
        f"{outcomes['unknown']} unknown (either way is correct)",
        highlight=False,
    )
    return 0 if result["passed"] else 1
