"""GitHub Actions integration: a Markdown verdict table in the job summary and `::error::` annotations.

When `GITHUB_STEP_SUMMARY` names a file (GitHub sets it in every step), `surge run`, `surge find-capacity`,
`surge compare` and `surge study` append one section to it, and print one workflow command per failed verdict
(`::error::`) and per unknown one (`::warning::`) on stdout, which the runner turns into annotations on the run's
page. Outside CI nothing happens.

    publish_run(summary, run_dir)          after `surge run` (and anything else that writes a run folder)
    publish_comparison(comparison)         after `surge compare`
    publish_study(study)                   after `surge study` (its study.json, docs/study.md)
    publish_forecast(forecast, out)        after `surge forecast` (its forecast.json)

Names come from user files (scenario names, phase names, fault targets, variant names), so every cell is
escaped: a `|` would split a table row and `<`, `*`, `[` … would be read as Markdown or HTML.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from reports.compare import Comparison, fmt
from runfolder.verdict import (
    GENERATOR_BOTTLENECK,
    NOT_THE_GATEWAYS,
    ExitCode,
    Headline,
    State,
    format_value,
    headline,
    verdicts_of,
)

SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~])")  # inline markup; a cell never starts a line


def escape_cell(text: object) -> str:
    """One table cell: HTML entities first (GitHub renders inline HTML), then Markdown punctuation backslashed,
    line breaks folded into spaces."""
    raw = " ".join(str(text).split())
    html = raw.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html)


def _command_data(text: str) -> str:
    """A workflow command's message: %, CR and LF are the only characters the runner decodes."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _command_property(text: str) -> str:
    return _command_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(level: str, title: str, message: str) -> str:
    """`::error title=…::message` (level: error, warning or notice)."""
    return f"::{level} title={_command_property(title)}::{_command_data(message)}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(escape_cell(cell) for cell in header) + " |"]
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(escape_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def publish_table(
    title: str,
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    notes: Sequence[str] = (),
    annotations: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
) -> bool:
    """Append `## title`, the table and the notes to the step summary; print the annotations. False (and
    nothing done) outside GitHub Actions. The title is escaped; notes are trusted Markdown."""
    target = (os.environ if env is None else env).get(SUMMARY_ENV)
    if not target:
        return False
    section = [f"## {escape_cell(title)}", "", markdown_table(header, rows), "", *notes, ""]
    with Path(target).open("a", encoding="utf-8") as handle:
        handle.write("\n".join(section) + "\n")
    out = sys.stdout if stream is None else stream
    for line in annotations:
        print(line, file=out, flush=True)
    return True


def run_section(summary: Mapping[str, Any], run_dir: Path) -> tuple[str, list[list[str]], list[str], list[str]]:
    """(title, rows, notes, annotations) of one run's summary.json — pure, so it is tested on a fixture run.

    A failed verdict is an `::error::`, an unknown one a `::warning::` with its reason: unknown is never a pass.
    """
    scenario = str(summary.get("scenario") or "run")
    code = summary.get("exit_code")
    verdicts = verdicts_of(summary)
    title = f"surge run {scenario}: {headline(code, verdicts)}"
    rows: list[list[str]] = []
    found: list[str] = []
    for verdict in verdicts:
        kind, name = verdict.kind, verdict.name
        value, bound = format_value(verdict.value, verdict.unit), format_value(verdict.bound, verdict.unit)
        reason = verdict.reason or ""
        rows.append([kind, name, value, bound, verdict.state.word, reason])
        detail = f"{scenario}: {kind} {name} = {value} (bound {bound})" + (f": {reason}" if reason else "")
        if verdict.state is State.FAIL:
            found.append(annotation("error", f"surge {kind} failed", detail))
        elif verdict.state is State.UNKNOWN:
            found.append(annotation("warning", f"surge {kind} unknown", detail))
    notes = [f"exit code {escape_cell(code)} · run folder {escape_cell(run_dir)}"]
    if summary.get("valid") is False:
        reasons = "; ".join(str(reason) for reason in summary.get("validity_reasons") or [])
        because = str(summary.get("invalid_because") or GENERATOR_BOTTLENECK)
        notes.insert(0, f"**{Headline.INVALID_RUN}**: {escape_cell(because)}; {NOT_THE_GATEWAYS}.")
        message = f"{scenario}: {because}" + (f" ({reasons})" if reasons else "")
        found.append(annotation("error", "surge run invalid", message))
    return title, rows, notes, found


def publish_run(summary: Mapping[str, Any], run_dir: Path, *, env: Mapping[str, str] | None = None) -> bool:
    title, rows, notes, found = run_section(summary, run_dir)
    header = ("check", "name", "value", "bound", "verdict", "reason")
    return publish_table(title, header, rows, notes=notes, annotations=found, env=env)


def publish_comparison(comparison: Comparison, *, env: Mapping[str, str] | None = None) -> bool:
    rows: list[list[str]] = []
    found: list[str] = []
    for row in comparison.rows:
        verdict = "context" if row.allowed is None else ("REGRESSED" if row.regressed else "ok")
        rows.append(
            [
                row.metric,
                fmt(row.base, row.unit),
                fmt(row.candidate, row.unit),
                fmt(row.delta, row.unit),
                "—" if row.allowed is None else fmt(row.allowed, row.unit),
                verdict,
            ]
        )
        if row.regressed:
            message = (
                f"{row.metric}: {fmt(row.base, row.unit)} → {fmt(row.candidate, row.unit)} "
                f"(allowed {fmt(row.allowed, row.unit)})"
            )
            found.append(annotation("error", "surge compare regression", message))
    title = f"surge compare {comparison.base} → {comparison.candidate}: " + (
        "REGRESSED" if comparison.regressed else "no regression"
    )
    header = ("metric", "base", "candidate", "delta", "allowed", "verdict")
    return publish_table(title, header, rows, annotations=found, env=env)


def publish_study(study: Mapping[str, Any], *, env: Mapping[str, str] | None = None) -> bool:
    """One row per variant of study.json; an `::error::` for each variant whose run failed (exit 1 or 3) or was
    invalid."""
    rows: list[list[str]] = []
    found: list[str] = []
    for variant in study.get("variants") or []:
        name, code = str(variant.get("name")), variant.get("exit_code")
        rows.append(
            [
                name,
                {ExitCode.PASS: Headline.PASS, ExitCode.FAIL: Headline.FAIL}.get(code, f"exit {code}"),
                "yes" if variant.get("valid") else "NO",
                format_value(variant.get("success_ratio")),
                format_value(variant.get("p99_ms")),
                format_value(variant.get("max_recovery_s")),
                format_value(variant.get("completed_ratio")),
            ]
        )
        if code in (ExitCode.FAIL, ExitCode.HARNESS) or variant.get("valid") is False:
            found.append(annotation("error", "surge study variant failed", f"{name}: exit code {code}"))
    title = f"surge study {study.get('study') or '?'} ({study.get('scenario') or '?'})"
    header = ("variant", "verdict", "valid", "success ratio", "p99 ms", "max recovery s", "completed")
    return publish_table(title, header, rows, annotations=found, env=env)


def publish_forecast(forecast: Mapping[str, Any], out: Path, *, env: Mapping[str, str] | None = None) -> bool:
    """The first breaking hours, the worst hours and the levers of forecast.json; an `::error::` naming the first
    hour whose p90 demand passes the capacity at N−1."""
    name = str(forecast.get("name") or "forecast")
    breaks = forecast.get("first_break") or {}
    fits = bool(forecast.get("fits"))
    worst = sorted(forecast.get("hours") or [], key=lambda row: -(row.get("utilisation_p90_n_minus_1") or 0))[:5]
    rows = [
        [
            row.get("hour"),
            format_value(row.get("demand_p50_per_s")),
            format_value(row.get("demand_p90_per_s")),
            format_value(row.get("capacity_n_minus_1_per_s")),
            format_value(row.get("utilisation_p90_n_minus_1")),
        ]
        for row in worst
    ]
    notes = [f"first hour p90 demand > capacity at N−1: **{escape_cell(breaks.get('p90_n_minus_1') or 'none')}** · "
             f"first hour p50 demand > capacity at N: **{escape_cell(breaks.get('p50_n') or 'none')}**"]  # fmt: skip
    notes += [f"- {escape_cell(lever.get('lever'))}: closes {100 * float(lever.get('closes_gap_share') or 0):.0f} % "
              "of the gap" for lever in (forecast.get("levers") or [])[:3]]  # fmt: skip
    notes.append(f"forecast folder {escape_cell(out)}")
    found = []
    if not fits:
        message = f"{name}: p90 demand passes the capacity at N-1 from {breaks.get('p90_n_minus_1')}"
        found.append(annotation("error", "surge forecast does not fit", message))
    title = f"surge forecast {name}: " + ("FITS at N−1 (p90)" if fits else "DOES NOT FIT at N−1 (p90)")
    header = ("worst hours", "demand p50 /s", "demand p90 /s", "capacity N−1 /s", "utilisation")
    return publish_table(title, header, rows, notes=notes, annotations=found, env=env)
