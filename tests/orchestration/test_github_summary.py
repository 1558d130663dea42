"""The GitHub job summary and annotations of a run, rendered from the committed fixture run folder."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from loadtests.cli.github_summary import SUMMARY_ENV, escape_cell, publish_comparison, publish_run, publish_study
from reports.compare import compare
from reports.finalize import finalize_run
from runfolder.figures import read_figures
from runfolder.verdict import State, verdicts_of
from tests.reports.runs import degrade, edit_meta, finished

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "run_small"
HOSTILE = "peak | <b>*x*</b> [y](z)"


def _cells(line: str) -> list[str]:
    """A Markdown table row split on its unescaped pipes, the way GitHub splits it."""
    assert line.startswith("| ") and line.endswith(" |"), line
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line[1:-1])]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(FIXTURE, target, ignore=shutil.ignore_patterns("summary.json", "junit.xml", "report.html"))
    phases = [
        {"name": "warm-up", "start_s": 0, "end_s": 8},
        {"name": HOSTILE, "start_s": 8, "end_s": 14},
        {"name": "after-midnight", "start_s": 14, "end_s": 30},
    ]
    edit_meta(target, phases=phases, slo={"min_success_ratio": 0.95, "max_p99_ms": 1, "max_recovery_s": 5,
                                          "max_lost": 0, "max_over_cap": 0})  # fmt: skip
    return target


def test_run_summary_table_has_every_verdict_escaped_and_failures_annotated(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = finalize_run(run_dir)
    target = tmp_path / "step-summary.md"
    target.write_text("earlier step\n", encoding="utf-8")

    assert publish_run(summary, run_dir, env={SUMMARY_ENV: str(target)})

    text = target.read_text(encoding="utf-8")
    assert text.startswith("earlier step\n")  # appended, never overwritten
    assert "## surge run fixture-small: FAIL" in text
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header, rows = _cells(lines[0]), [_cells(line) for line in lines[1:]]
    assert header == ["check", "name", "value", "bound", "verdict", "reason"]
    expected = verdicts_of(summary)
    assert len(rows) == len(expected) and all(len(row) == 6 for row in rows)
    for row, verdict in zip(rows, expected, strict=True):
        assert row[0] == verdict.kind and row[1] == escape_cell(verdict.name)
        assert row[4] == {"pass": "pass", "fail": "FAIL", "unknown": "unknown"}[verdict.state]
    hostile = next(row for row in rows if row[1].startswith("p99\\_ms\\[peak"))
    assert hostile[1] == r"p99\_ms\[peak \| &lt;b&gt;\*x\*&lt;/b&gt; \[y\](z)\]"
    assert hostile[2].endswith(" ms") and hostile[4] == "FAIL"
    assert "<b>" not in text

    annotations = [line for line in capsys.readouterr().out.splitlines() if line.startswith("::")]
    failed = [verdict for verdict in expected if verdict.state is State.FAIL]
    unknown = [verdict for verdict in expected if verdict.state is State.UNKNOWN]
    assert failed and len(annotations) == len(failed) + len(unknown)
    assert sum(line.startswith("::error title=surge slo failed::") for line in annotations) == len(failed)
    assert any("p99_ms = " in line for line in annotations)


def test_outside_github_actions_nothing_is_written(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = finalize_run(run_dir)
    assert not publish_run(summary, run_dir, env={})
    assert capsys.readouterr().out == ""


def test_comparison_summary_flags_the_regression(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, candidate = tmp_path / "base", tmp_path / "candidate"
    shutil.copytree(FIXTURE, base)
    shutil.copytree(FIXTURE, candidate)
    degrade(candidate, latency_factor=3.0, fail_every=5)
    comparison = compare(read_figures(finished(base)), read_figures(finished(candidate)))
    target = tmp_path / "step-summary.md"

    assert publish_comparison(comparison, env={SUMMARY_ENV: str(target)})

    lines = [line for line in target.read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    rows = {cells[0]: cells for cells in map(_cells, lines[1:])}
    assert rows["p99"][5] == "REGRESSED" and rows["offered"][5] == "context"
    annotations = capsys.readouterr().out.splitlines()
    assert any(line.startswith("::error title=surge compare regression::p99") for line in annotations)


def test_study_summary_has_a_row_per_variant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = {
        "study": "mitigations",
        "scenario": "double11",
        "variants": [
            {"name": "baseline", "exit_code": 0, "valid": True, "success_ratio": 0.995, "p99_ms": 120.0,
             "max_recovery_s": 2.5, "completed_ratio": 0.9},
            {"name": "split | plans", "exit_code": 1, "valid": True, "success_ratio": 0.9, "p99_ms": 900.0,
             "max_recovery_s": None, "completed_ratio": 0.97},
        ],
    }  # fmt: skip
    target = tmp_path / "step-summary.md"

    assert publish_study(study, env={SUMMARY_ENV: str(target)})

    lines = [line for line in target.read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    rows = [_cells(line) for line in lines[1:]]
    assert [row[0] for row in rows] == ["baseline", r"split \| plans"]
    assert [row[1] for row in rows] == ["PASS", "FAIL"] and rows[1][5] == "—"
    assert capsys.readouterr().out.splitlines() == [
        "::error title=surge study variant failed::split | plans: exit code 1"
    ]
