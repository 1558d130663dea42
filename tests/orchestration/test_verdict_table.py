"""The console verdict table: unknown is shown as unknown with its reason, never as a pass."""

from __future__ import annotations

from rich.console import Console

from loadtests.cli.verdict_table import print_verdicts
from runfolder.verdict import Kind, Verdict


def printed(summary: dict[str, object]) -> str:
    console = Console(record=True, width=200)
    print_verdicts(summary, console)
    return console.export_text()


def test_unknown_verdicts_say_why_and_the_run_is_not_proven() -> None:
    summary = {
        "scenario": "double11",
        "slos": [
            Verdict.of(Kind.SLO, "p99_ms", 120.5, 800.0, True),
            Verdict.of(
                Kind.SLO, "recovery_s[kill primary@34s]", None, 5.0, None, "not played: kill needs the embedded cluster"
            ),
        ],
        "invariant_verdicts": [Verdict.of(Kind.INVARIANT, "lost", None, 0, None, "no ledger copy")],
        "run_verdicts": [Verdict.of(Kind.RUN, "generator_valid", True, True, True)],
        "exit_code": 3,
    }
    text = printed(summary)
    assert "120.5 ms" in text and "800 ms" in text
    assert "unknown — not played: kill needs the embedded cluster" in text
    assert "unknown — no ledger copy" in text
    assert "NOT PROVEN: nothing failed, but 2 of 4 checks are unknown" in text
    assert "exit code 3" in text


def test_a_summary_written_before_unknown_existed_still_reads() -> None:
    text = printed({"slos": [{"name": "p99_ms", "value": 900.0, "bound": 800.0, "passed": False}], "exit_code": 1})
    assert "FAIL" in text and "unknown" not in text
