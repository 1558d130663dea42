"""The run-folder format module: its algebra, its clock, its models and its one JSON writer."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from reports.frames import read_steps
from runfolder.clock import SHANGHAI, ClusterClock, read_cluster_clock
from runfolder.history import HISTORY_COLUMNS, Attempt, history_line, history_rows
from runfolder.layout import RunFolder, RunFolderError, write_json
from runfolder.models import RunMeta, read_meta
from runfolder.outcomes import ADMITTED, FAILURES, GOOD, OUTCOME_CLASSES, REJECTED, success_ratio
from runfolder.steps import STEP_COLUMNS, CapacityStep, write_steps_csv

FIXTURES = Path(__file__).parents[1] / "fixtures"


def test_the_algebra_partitions_the_classes() -> None:
    """good and failures split the admitted classes; a 429 alone is neither; a decline is never rejected."""
    assert set(GOOD) | set(FAILURES) == set(ADMITTED)
    assert not set(GOOD) & set(FAILURES)
    assert set(OUTCOME_CLASSES) - set(ADMITTED) == {"rate_limited"}
    assert "declined" in GOOD and "declined" not in REJECTED


def test_success_ratio_counts_declines_as_good_and_leaves_429s_out() -> None:
    assert success_ratio({"succeeded": 6, "declined": 2, "rate_limited": 50, "shed": 1, "error": 1}) == 0.8
    assert success_ratio({"rate_limited": 3}) is None


def test_a_capacity_probes_success_ratio_counts_429s_against_it() -> None:
    counts = {"succeeded": 6, "declined": 2, "rate_limited": 8, "shed": 1, "error": 1}
    assert success_ratio(counts, of=OUTCOME_CLASSES) == 8 / 18
    assert success_ratio({}, of=OUTCOME_CLASSES) is None


def test_history_rows_read_back_what_the_generator_wrote(tmp_path: Path) -> None:
    assert list(history_rows(tmp_path)) == []  # no history folder: no attempts
    folder = RunFolder(tmp_path)
    folder.history.mkdir()
    for worker, code in ((1, 'odd, "quoted"\r\nline'), (0, "")):
        made = Attempt(f"p{worker}", "k", 1, "u1", f"c{worker}", "ICBC", 100, 1.0, 1.0, 1.5, 201, code, "succeeded",
                       "rp", "r1", "2026-11-11", False, 0)  # fmt: skip
        folder.history_of(worker).write_text(",".join(HISTORY_COLUMNS) + "\n" + history_line(made), encoding="utf-8")
    rows = list(history_rows(tmp_path))
    assert [(row["card_id"], row["channel"], row["code"]) for row in rows] == [
        ("c0", "ICBC", ""),
        ("c1", "ICBC", 'odd, "quoted"\r\nline'),
    ]
    folder.history_of(2).write_text("payment_id,key\np,k\n", encoding="utf-8")
    with pytest.raises(RunFolderError, match="not a history file"):
        list(history_rows(tmp_path))


def test_the_package_is_light_enough_for_the_locust_process() -> None:
    """No pandas, numpy or hdrh in any module of the package: the generator imports it inside every Locust worker."""
    code = (
        "import importlib, pkgutil, sys, runfolder\n"
        "for module in pkgutil.iter_modules(runfolder.__path__):\n"
        "    importlib.import_module(f'runfolder.{module.name}')\n"
        "print(sorted({'pandas', 'numpy', 'hdrh', 'pyarrow'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_cluster_clock_runs_fast_from_its_anchor(tmp_path: Path) -> None:
    (tmp_path / "cluster").mkdir()
    state = {"admin_token": "t", "clock": {"start": "2026-11-11T23:59:00+08:00", "speed": 60.0, "anchor_unix": 100.0}}
    (tmp_path / "cluster" / "cluster.json").write_text(json.dumps(state), encoding="utf-8")
    clock = read_cluster_clock(tmp_path)
    assert clock is not None
    assert clock.sim_at(100.0) == datetime(2026, 11, 11, 23, 59, tzinfo=SHANGHAI)
    assert clock.business_date(100.5).isoformat() == "2026-11-11"
    assert clock.business_date(101.5).isoformat() == "2026-11-12"  # 90 simulated seconds later
    assert clock.unix_at(datetime(2026, 11, 12, tzinfo=SHANGHAI)) == pytest.approx(101.0)


def test_without_a_cluster_state_the_configured_clock_is_anchored_at_the_start(tmp_path: Path) -> None:
    meta = RunMeta(
        scenario="s",
        seed=1,
        started_unix=1000.0,
        gateway_config={"clock": {"start": "2026-11-11T00:00:00+08:00", "speed": 2.0}},
    )
    clock = meta.clock(tmp_path)
    assert clock == ClusterClock(start=datetime(2026, 11, 11, tzinfo=SHANGHAI), anchor_unix=1000.0, speed=2.0)
    assert RunMeta(scenario="s", seed=1, started_unix=0.0).clock(tmp_path) is None


@pytest.mark.parametrize("fixture", ["run_small", "run_recorded"])
def test_meta_round_trips_through_the_model(fixture: str, tmp_path: Path) -> None:
    """Reading and rewriting a recorded meta.json keeps every key and value (JSON-equal)."""
    original = json.loads((FIXTURES / fixture / "meta.json").read_text(encoding="utf-8"))
    write_json(tmp_path / "meta.json", read_meta(FIXTURES / fixture))
    rewritten = json.loads((tmp_path / "meta.json").read_text(encoding="utf-8"))
    # an SLO key added since the folder was recorded is written with its default: the recorded ones are kept
    rewritten["slo"] = {key: rewritten["slo"][key] for key in original["slo"]}
    assert {key: rewritten[key] for key in original} == original


def test_a_bad_meta_is_one_line_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "meta.json").write_text(json.dumps({"scenario": "s", "seed": "eleven", "started_unix": 0}))
    with pytest.raises(RunFolderError, match=r"meta.json: 'seed' must be a valid integer"):
        read_meta(tmp_path)


def test_write_json_replaces_atomically_and_leaves_no_scratch(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    target.write_text("old", encoding="utf-8")
    write_json(target, {"name": "双十一", "n": 1})
    assert target.read_text(encoding="utf-8") == '{\n  "name": "双十一",\n  "n": 1\n}\n'
    assert [path.name for path in tmp_path.iterdir()] == ["summary.json"]
    with pytest.raises(ValueError, match="Out of range float"):
        write_json(target, {"nan": float("nan")})
    assert json.loads(target.read_text(encoding="utf-8")) == {"name": "双十一", "n": 1}
    (tmp_path / "taken").mkdir()
    with pytest.raises(OSError):
        write_json(tmp_path / "taken", {"n": 2})  # the rename fails: the scratch file must not stay behind
    assert sorted(path.name for path in tmp_path.iterdir()) == ["summary.json", "taken"]


def test_unknown_keys_of_a_newer_folder_are_kept() -> None:
    meta = RunMeta.model_validate({"scenario": "s", "seed": 1, "started_unix": 0.0, "format_note": "future"})
    assert meta.model_dump()["format_note"] == "future"


def test_capacity_steps_are_written_in_the_columns_the_reports_read(tmp_path: Path) -> None:
    steps = [
        CapacityStep(1, 50.0, 2.0, 10.0, 49.8, 49.5, 0.995, 40.0, True, ""),
        CapacityStep(2, 75.0, 14.0, 22.0, 74.9, 61.0, 0.81, 900.0, False, "rate cap (429 RATE_LIMITED)"),
    ]
    write_steps_csv(tmp_path / "steps.csv", steps)
    read = read_steps(tmp_path / "steps.csv")
    assert list(read.columns) == list(STEP_COLUMNS)
    assert read["passed"].tolist() == [True, False] and read["limited_by"].fillna("").tolist()[1].startswith("rate")
