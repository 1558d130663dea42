"""A console that is a log (a CI job, a pipe): tables at their natural width, the status line as plain lines.

pytest captures stdout and stderr, so every Console built here writes to a log, as in a CI job."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from loadtests.cli.console import LOG_WIDTH, console, status_line
from loadtests.cli.verdict_table import print_verdicts
from runfolder.verdict import Kind, Verdict

REASON = "not played: kill needs the embedded cluster, and --host points at a gateway surge did not start"


def test_a_verdict_row_with_a_long_reason_is_one_line_in_a_log(capsys: pytest.CaptureFixture[str]) -> None:
    summary = {
        "scenario": "double11",
        "slos": [Verdict.of(Kind.SLO, "recovery_s[kill primary@34s]", None, 5.0, None, REASON)],
        "exit_code": 3,
    }
    out = console()
    assert not out.is_terminal and out.width == LOG_WIDTH
    print_verdicts(summary, out)
    lines = capsys.readouterr().out.splitlines()
    assert any("recovery_s[kill primary@34s]" in line and REASON in line for line in lines), lines


def test_the_status_line_in_a_log_is_plain_lines_without_carriage_returns() -> None:
    log = io.StringIO()
    out = Console(file=log, width=LOG_WIDTH)
    with status_line(out, every_s=0.0) as show:
        for second in range(3):
            show(f"{second}/3s  offered 10/s")
        show("2/3s  offered 10/s")  # unchanged: not repeated
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text
    assert text.splitlines() == ["0/3s  offered 10/s", "1/3s  offered 10/s", "2/3s  offered 10/s"]
    log = io.StringIO()
    with status_line(Console(file=log, width=LOG_WIDTH), every_s=3600.0) as show:
        for second in range(3):
            show(f"{second}/3s")
    assert log.getvalue().splitlines() == ["0/3s", "2/3s"]  # the first, then the last at the end
