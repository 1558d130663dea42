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
from reports.study import best_per_question, completed_bills, variant_row, write_study
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
