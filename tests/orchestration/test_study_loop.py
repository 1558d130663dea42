"""The variant loop with a stand-in for `surge run`: a harness failure is recorded and the study goes on; an
interruption keeps the variants that finished and says the study is unfinished."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from loadtests.errors import HarnessError
from loadtests.orchestration.stopping import StoppedBySignal
from loadtests.orchestration.study import VariantPlan, plan_study, run_study, study_header
from loadtests.scenario.study import load_study
from reports.finalize import finalize_run
from tests.reports.conftest import DERIVED, FIXTURE

STUDY = """
name = "loop"
scenario = "due-date-wave"
[[variant]]
name = "first"
[[variant]]
name = "second"
[[variant]]
name = "third"
"""


def plans(tmp_path: Path) -> tuple[dict[str, object], list[VariantPlan], Path]:
    path = tmp_path / "study.toml"
    path.write_text(STUDY, encoding="utf-8")
    study, scenario = load_study(str(path))
    out = tmp_path / "out"
    planned = plan_study(study, scenario, out)
    return study_header(study, scenario, planned), planned, out


def finished_run(plan: VariantPlan) -> int:
    shutil.copytree(FIXTURE, plan.run_dir, ignore=shutil.ignore_patterns(*DERIVED), dirs_exist_ok=True)
    return int(finalize_run(plan.run_dir)["exit_code"])


def test_a_failed_harness_is_a_row_with_exit_3_and_the_study_goes_on(tmp_path: Path) -> None:
    header, planned, out = plans(tmp_path)

    def run_variant(plan: VariantPlan) -> int:
        if plan.name == "second":
            raise HarnessError("the embedded gateway cluster did not start: boom")
        return finished_run(plan)

    rows = run_study(header, planned, out, run_variant)
    study = json.loads((out / "study.json").read_text(encoding="utf-8"))
    assert [(v["name"], v["exit_code"], v["valid"]) for v in study["variants"]] == [
        ("first", 0, True),
        ("second", 3, False),
        ("third", 0, True),
    ]
    assert "did not start" in rows[1]["problem"]
    assert study["finished"] is True and study["exit_code"] == 3
    assert (out / "first" / "scenario.toml").is_file()


def test_an_interrupted_study_keeps_the_variants_that_finished(tmp_path: Path) -> None:
    header, planned, out = plans(tmp_path)

    def run_variant(plan: VariantPlan) -> int:
        if plan.name == "second":
            raise KeyboardInterrupt
        return finished_run(plan)

    with pytest.raises(KeyboardInterrupt):
        run_study(header, planned, out, run_variant)
    study = json.loads((out / "study.json").read_text(encoding="utf-8"))
    assert [v["name"] for v in study["variants"]] == ["first"]
    assert study["finished"] is False and study["interrupted"] is True
    assert "UNFINISHED" in (out / "study.html").read_text(encoding="utf-8")


def test_sigterm_between_variants_stops_the_study_as_a_variants_sigterm_does(tmp_path: Path) -> None:
    """No `surge run` handles signals between two variants: the study's own handler turns SIGTERM into the same
    stop (exit 143, the page unfinished) instead of Python's default death, and is removed afterwards."""
    header, planned, out = plans(tmp_path)
    before = signal.getsignal(signal.SIGTERM)

    def run_variant(plan: VariantPlan) -> int:
        code = finished_run(plan)
        if plan.name == "first":
            os.kill(os.getpid(), signal.SIGTERM)  # as if it came just after the first variant ended
        return code

    with pytest.raises(StoppedBySignal) as stopped:
        run_study(header, planned, out, run_variant)
    assert stopped.value.exit_code == 143
    study = json.loads((out / "study.json").read_text(encoding="utf-8"))
    assert [v["name"] for v in study["variants"]] == ["first"]
    assert study["finished"] is False and study["interrupted"] is True
    assert signal.getsignal(signal.SIGTERM) is before
