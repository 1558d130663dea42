"""The console table printed after a run: each SLO and invariant with its value, bound and verdict."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_verdicts(summary: dict[str, Any], console: Console) -> None:
    table = Table(title=f"surge verdicts — {summary.get('scenario', '?')}", show_lines=False)
    for column in ("check", "value", "bound", "verdict"):
        table.add_column(column)
    for slo in summary.get("slos", []):
        table.add_row(
            str(slo["name"]), _fmt(slo.get("value")), _fmt(slo.get("bound")), _verdict(slo.get("passed"))
        )
    invariants: dict[str, Any] = summary.get("invariants", {})
    for name in ("lost", "phantom", "duplicate", "over_cap"):
        if name in invariants:
            value = invariants[name]
            passed = None if value is None else value == 0
            table.add_row(f"invariant {name}", _fmt(value), "0", _verdict(passed))
    console.print(table)
    if summary.get("valid") is False:
        console.print(
            "[bold red]INVALID RUN: the load generator was the bottleneck; these figures are not the "
            "gateway's[/]"
        )
    console.print(f"exit code {summary.get('exit_code')}")


def _fmt(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _verdict(passed: bool | None) -> str:
    if passed is None:
        return "[yellow]unknown[/]"
    return "[green]pass[/]" if passed else "[bold red]FAIL[/]"
