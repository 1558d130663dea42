"""The console table printed after a run: each SLO and invariant with its value, bound and verdict."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reports.slo import format_value


def print_verdicts(summary: dict[str, Any], console: Console) -> None:
    table = Table(title=f"surge verdicts — {summary.get('scenario', '?')}", show_lines=False)
    for column in ("check", "value", "bound", "verdict"):
        table.add_column(column)
    for slo in summary.get("slos", []):
        table.add_row(*_row(str(slo["name"]), slo))
    for verdict in summary.get("invariant_verdicts", []):
        table.add_row(*_row(f"invariant {verdict['name']}", verdict))
    console.print(table)
    if summary.get("valid") is False:
        console.print(
            "[bold red]INVALID RUN: the load generator was the bottleneck; these figures are not the gateway's[/]"
        )
    console.print(f"exit code {summary.get('exit_code')}")


def _row(name: str, verdict: dict[str, Any]) -> tuple[str, str, str, str]:
    """Names come from scenario phases and fault targets: escaped, so `[spike-1]` is shown, not parsed."""
    return (
        escape(name),
        format_value(verdict.get("value")),
        format_value(verdict.get("bound")),
        _verdict(verdict.get("passed")),
    )


def _verdict(passed: bool | None) -> str:
    if passed is None:
        return "[yellow]unknown[/]"
    return "[green]pass[/]" if passed else "[bold red]FAIL[/]"
