"""The console table printed after a run: each SLO, invariant and run check with its value, bound and verdict.

A verdict is pass, FAIL or unknown; an unknown one shows why it could not be checked, and the closing line says
how many were unknown, so a console reader never takes "nothing failed" for "everything held".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from errortext.console_text import one_line
from loadtests.cli.console import console as cli_console
from loadtests.cli.github_summary import publish_run
from reports.comparable import unlike_line
from runfolder.layout import RunFolder
from runfolder.verdict import (
    GENERATOR_BOTTLENECK,
    NOT_THE_GATEWAYS,
    Headline,
    Kind,
    State,
    Verdict,
    format_value,
    verdicts_of,
)


def finish(summary: dict[str, Any], run_dir: Path, *lines: str) -> int:
    """The end of every command that wrote a run folder, once `run_folder.conclude` has judged it: only printing
    — the verdicts, the command's own `lines` and the report's path last, on stdout (and the verdict table in a
    GitHub Actions job summary); the exit code (README)."""
    print_verdicts(summary, cli_console())
    differences = (summary.get("comparison") or {}).get("unlike") or []
    if differences:  # `surge run --baseline` with a folder of another scenario, scale or gateway
        cli_console(stderr=True, highlight=False).print(
            f"warning: --baseline: {one_line(unlike_line(differences))}", markup=False
        )
    publish_run(summary, run_dir)  # GitHub Actions' job summary and annotations; nothing outside CI
    for line in lines:
        print(line)
    report = RunFolder(run_dir).report
    print(f"report: {one_line((report if report.exists() else run_dir).resolve())}")
    exit_code: int = summary["exit_code"]
    return exit_code


def print_verdicts(summary: dict[str, Any], console: Console) -> None:
    unmatched = summary.get("unmatched_answers")
    if unmatched:  # up front: a wrong response rule, not the service, is what the figures below describe
        console.print(f"[bold yellow]{escape(one_line(unmatched['line']))}[/]")
        sample = unmatched.get("sample")
        if sample:
            cut = " …" if sample.get("cut") else ""
            console.print(
                f"  e.g. HTTP {sample.get('status')}: {one_line(sample.get('body', ''))}{cut}",
                markup=False,
                highlight=False,
            )
    table = Table(title=f"surge verdicts — {escape(one_line(summary.get('scenario', '?')))}", show_lines=False)
    for column in ("check", "value", "bound", "verdict"):
        table.add_column(column)
    verdicts = verdicts_of(summary)
    for verdict in verdicts:
        table.add_row(*_row(verdict))
    console.print(table)
    aborted, stopped = summary.get("aborted"), summary.get("stopped")
    if summary.get("not_started") and stopped:
        console.print(
            f"[bold yellow]NOT STARTED[/]: {escape(one_line(stopped['reason']))} before the first arrival;"
            " nothing was measured, every verdict is unknown"
        )
        console.print(f"exit code {summary.get('exit_code')}")
        return
    if aborted:
        console.print(
            f"[bold red]ABORTED at t = {aborted['at_s']:.0f} s: {escape(one_line(aborted['rule']))}[/]"
            f" (measured {aborted['value']:.4g}); the verdicts cover the seconds before it"
        )
    elif stopped:
        console.print(
            f"[bold yellow]interrupted at t = {stopped['at_s']:.0f} s[/] ({escape(one_line(stopped['reason']))});"
            " the verdicts cover only the seconds that ran"
        )
    if summary.get("valid") is False:
        because = escape(str(summary.get("invalid_because") or GENERATOR_BOTTLENECK))
        console.print(f"[bold red]{Headline.INVALID_RUN}: {because}; {NOT_THE_GATEWAYS}[/]")
    states = [verdict.state for verdict in verdicts]
    unknown = states.count(State.UNKNOWN)
    if unknown and State.FAIL not in states:
        console.print(
            f"[yellow]{Headline.NOT_PROVEN}: nothing failed, but {unknown} of {len(states)} checks are unknown[/]"
        )
    elif unknown:
        console.print(f"[yellow]{unknown} of {len(states)} checks unknown[/]")
    console.print(f"exit code {summary.get('exit_code')}")


def _row(verdict: Verdict) -> tuple[str, str, str, str]:
    """Names come from scenario phases and fault targets: escaped, so `[spike-1]` is shown, not parsed."""
    name = verdict.name if verdict.kind is Kind.SLO else f"{verdict.kind} {verdict.name}"
    return (
        escape(one_line(name)),
        format_value(verdict.value, verdict.unit),
        format_value(verdict.bound, verdict.unit),
        verdict_cell(verdict),
    )


COLORS = {State.PASS: "green", State.FAIL: "bold red", State.UNKNOWN: "yellow"}


def verdict_cell(verdict: Verdict) -> str:
    """A verdict's state as the console shows it, with the reason of a failure or an unknown."""
    cell = f"[{COLORS[verdict.state]}]{verdict.state.word}[/]"
    if not verdict.reason or verdict.state is State.PASS:
        return cell
    separator = " " if verdict.state is State.FAIL else " — "
    return f"{cell}{separator}{escape(one_line(verdict.reason))}"
