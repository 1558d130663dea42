"""study.json and study.html from finished run folders (the committed fixture run, twice): the rows, the best
variant per question, invalid variants never ranked, and the page in headless Chromium — no console error, every
chart drawn with data, no script from a name in the study file ever running."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from reports.finalize import finalize_run
from reports.frames import load_run
from reports.study.page import _charts, render_study, write_study
from reports.study.ranking import best_per_question, study_document, variant_rows
from reports.study.rows import EXTRAS, FIELDS, completed_bills, variant_row
from tests.reports.conftest import DERIVED, FIXTURE
from tests.reports.runs import edit_json
from tests.reports.test_browser import open_report

EVIL = "<img src=x onerror=alert(1)>"
HEADER = {"study": "<script>alert(2)</script>", "description": "d", "scenario": "s", "seed": 1, "scale": 1.0,
          "duration_s": 30.0, "variants_planned": [EVIL, "plain", "broken"]}  # fmt: skip


def finished_run(root: Path, name: str) -> Path:
    target = root / name
    shutil.copytree(FIXTURE, target, ignore=shutil.ignore_patterns(*DERIVED))
    finalize_run(target)
    return target


@pytest.fixture
def rows(tmp_path: Path) -> list[dict[str, Any]]:
    evil = finished_run(tmp_path, EVIL)
    plain = finished_run(tmp_path, "plain")
    edit_json(plain / "summary.json", valid=False)  # the generator was the bottleneck there
    return [
        variant_row(EVIL, evil, 0),
        variant_row("plain", plain, 3),
        variant_row("broken", tmp_path / "broken", 3, "the embedded gateway cluster did not start"),
    ]


def test_rows_carry_the_contract_fields_and_invalid_variants_are_never_ranked(rows: list[dict[str, Any]]) -> None:
    evil, plain, broken = rows
    assert evil["valid"] is True and plain["valid"] is False and broken["valid"] is False
    assert evil["payments"] > 0 and 0 < evil["completed_ratio"] <= 1
    assert broken["problem"] and broken["payments"] is None
    best = best_per_question(rows)
    assert best and all(answer["names"] == [EVIL] for answer in best)


def test_completed_bills_count_plan_parts_toward_their_bill(tmp_path: Path) -> None:
    frames = load_run(finished_run(tmp_path, "run"))
    history = frames.history
    bills = history[history["part"] == 0].drop_duplicates("payment_id")
    fully_paid_first_time = int((bills["status"] == 201).sum())
    with_parts = history[(history["part"] > 0) & (history["status"] == 201)]["payment_id"].nunique()
    assert fully_paid_first_time > 0 and with_parts > 0, "the fixture run has plain bills and split plans"
    assert completed_bills(frames) > fully_paid_first_time


def test_study_json_holds_every_variant_and_the_worst_exit_code(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    write_study(tmp_path, HEADER, rows, finished=True)
    study = json.loads((tmp_path / "study.json").read_text(encoding="utf-8"))
    assert study["study"] == HEADER["study"] and study["scenario"] == "s"
    assert [variant["name"] for variant in study["variants"]] == [EVIL, "plain", "broken"]
    assert study["exit_code"] == 3
    assert all("curves" not in variant for variant in study["variants"])


def run(name: str, repetition: int, completed: float, *, valid: bool = True, verdict: str = "fail") -> dict[str, Any]:
    """A run's row as variant_row makes it, with only the figures these tests rank."""
    row: dict[str, Any] = dict.fromkeys(FIELDS + EXTRAS)
    row.update(name=name, run_dir=f"out/{name}/run-{repetition}", exit_code=0 if verdict == "pass" else 1,
               valid=valid, verdict=verdict, repetition=repetition, seed=repetition, problem="", failed_checks=[],
               completed_ratio=completed, p99_ms=100.0 + repetition)  # fmt: skip
    row["curves"] = {"t_s": [], "succeeded": [], "rejected": []}
    return row


def completed_answer(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(a for a in best_per_question(variant_rows(runs)) if a["key"] == "completed_ratio")


def test_a_winner_is_named_only_when_every_run_beats_every_run_of_the_runner_up() -> None:
    """46.9 % against 48.0 %, one run each, is noise: a study names a winner only when the ranges over its
    repetitions do not overlap, and says "no clear winner" (and why) otherwise."""
    clear = [run("a", k, c) for k, c in ((1, 0.72), (2, 0.70), (3, 0.71))]
    clear += [run("b", k, c) for k, c in ((1, 0.61), (2, 0.60), (3, 0.69))]
    answer = completed_answer(clear)
    assert answer["clear"] is True and answer["names"] == ["a"] and answer["runner_up"] == "b"
    page = render_study(HEADER, variant_rows(clear), finished=True)
    assert 'data-key="completed_ratio" data-clear="true"' in page and "clear of b" in page
    assert answer["value"] == 0.71  # the median run's
    rows = variant_rows(clear)
    assert rows[0]["spread"]["completed_ratio"] == [0.70, 0.72] and len(rows[0]["runs"]) == 3
    overlapping = clear[:3] + [run("b", k, c) for k, c in ((1, 0.61), (2, 0.705), (3, 0.69))]
    answer = completed_answer(overlapping)
    assert answer["clear"] is False and "overlaps b's" in answer["why"] and answer["names"] == ["a"]
    single = [run("a", 1, 0.48), run("b", 1, 0.469)]
    answer = completed_answer(single)
    assert answer["clear"] is False and "one run each" in answer["why"]
    invalid = clear[:3] + [run("b", k, 0.99, valid=k != 2) for k in (1, 2, 3)]  # b: one invalid run, not ranked
    assert completed_answer(invalid)["why"] == "no other valid variant to compare with"


def test_a_failure_found_outranks_a_run_whose_harness_failed() -> None:
    """A variant's runs fold into the code of the one that found the gateway failing, as its verdict does, and the
    study's code is that too: a harness failure elsewhere does not hide it."""
    invalid = {**run("a", 1, 0.7), "exit_code": 3, "verdict": "unknown", "valid": False}
    rows = variant_rows([invalid, run("a", 2, 0.7), run("b", 1, 0.6, verdict="pass")])
    assert [(row["exit_code"], row["verdict"]) for row in rows] == [(1, "fail"), (0, "pass")]
    broken = {**run("c", 1, 0.5), "exit_code": 3, "verdict": "unknown"}
    assert study_document(HEADER, variant_rows([broken, run("a", 1, 0.7)]), finished=True)["exit_code"] == 1
    stopped = {**run("d", 1, 0.5), "exit_code": 130, "verdict": "unknown"}
    assert study_document(HEADER, variant_rows([run("a", 1, 0.7), stopped]), finished=False)["exit_code"] == 130


def test_the_page_says_which_variant_passes_or_in_words_that_none_does(tmp_path: Path) -> None:
    failing = [run("a", 1, 0.7), run("b", 1, 0.6, valid=False)]
    failing[0]["failed_checks"] = ["success_ratio 0.8234 (bound 0.95)"]
    failing[1]["problem"] = "the scenario's user pool ran out ([arrivals] pool), not the gateway"
    page = render_study(HEADER, variant_rows(failing), finished=True)
    assert "No variant passes." in page and "a: fails success_ratio 0.8234 (bound 0.95)" in page
    assert 'data-clear="false"' in page and "no clear winner</strong> — a leads" in page  # one run each
    assert "b: invalid — the scenario&#39;s user pool ran out" in page
    write_study(tmp_path, HEADER, [run("a", 1, 0.7, verdict="pass"), *failing[1:]], finished=True)
    study = json.loads((tmp_path / "study.json").read_text(encoding="utf-8"))
    assert study["passing"] == ["a"] and study["noise_test"].startswith("non-overlapping ranges")
    assert "Passes every SLO and invariant" in (tmp_path / "study.html").read_text(encoding="utf-8")


def test_a_failed_check_of_a_variant_is_named_with_its_value_and_bound(tmp_path: Path) -> None:
    target = finished_run(tmp_path, "v")
    summary = json.loads((target / "summary.json").read_text(encoding="utf-8"))
    summary["slos"][0].update(verdict="fail", passed=False)
    edit_json(target / "summary.json", slos=summary["slos"])
    row = variant_row("v", target, 1)
    assert row["failed_checks"] and row["failed_checks"][0].startswith(str(summary["slos"][0]["name"]) + " ")
    assert "(bound " in row["failed_checks"][0]


def test_the_bar_chart_draws_invalid_variants_apart_under_a_legend(rows: list[dict[str, Any]]) -> None:
    completed = next(chart for chart in _charts(variant_rows(rows)) if chart["id"] == "completed")
    names = [trace["name"] for trace in completed["data"]]
    assert names == ["bills completed", "invalid run (not ranked)"] and completed["layout"]["showlegend"] is True
    assert completed["data"][1]["x"] == ["plain"] and completed["data"][1]["marker"]["pattern"]["shape"]
    assert EVIL not in completed["data"][0]["x"]  # escaped, as every name the page shows


@pytest.mark.browser
async def test_study_html_opens_offline_with_every_chart_drawn_and_names_escaped(
    tmp_path: Path, rows: list[dict[str, Any]]
) -> None:
    write_study(tmp_path, HEADER, rows, finished=True)
    page = (tmp_path / "study.html").read_text(encoding="utf-8")
    assert EVIL not in page and "<script>alert(2)" not in page
    result, log = await open_report(tmp_path / "study.html", tmp_path / "profile")
    assert log.console_errors == [] and log.exceptions == [] and log.dialogs == []
    assert log.remote_requests == []
    assert result["error"] is None
    assert result["title"] == "surge study — <script>alert(2)</script>"
    assert {chart["id"] for chart in result["charts"]} == {"throughput", "rejections", "completed"}
    assert result["drawn"] == len(result["charts"])
    for chart in result["charts"]:
        assert chart["svg"], chart["id"]
        assert chart["points"] and all(n > 0 for n in chart["points"]), chart["id"]
