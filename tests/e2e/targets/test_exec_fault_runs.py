"""`surge run --host` with faults: exec faults are played and logged, a failed one makes the run exit 3, and
built-in faults (which need the embedded cluster) are skipped with one warning line and an event each."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest

from tests.support.procs import SURGE, replica

pytestmark = pytest.mark.e2e
SCENARIO = """
name = "faults"
duration_s = 4
seed = 5
[population]
users = 50
bill_fen = {{ median = 100000, p99 = 400000 }}
[[rate]]
at_s = 0
per_s = 10
[[faults]]
at_s = 1
action = "kill"
target = "primary"
duration_s = 1
[[faults]]
at_s = 1
action = "exec"
target = "svc"
command = ["true"]
undo = ["touch", "{marker}"]
duration_s = 1
[[faults]]
at_s = 2
action = "exec"
target = "broken"
command = ["false"]
[[faults]]
at_s = 3
action = "exec"
target = "outlasting"
command = ["true"]
undo = ["touch", "{outlasting}"]
duration_s = 600
"""


def test_exec_faults_are_played_a_failed_one_exits_3_and_builtin_faults_are_skipped(tmp_path: Path) -> None:
    marker, outlasting = tmp_path / "undone", tmp_path / "outlasting-undone"
    scenario = tmp_path / "faults.toml"
    scenario.write_text(SCENARIO.format(marker=marker, outlasting=outlasting), encoding="utf-8")
    out = tmp_path / "run"
    with replica(tmp_path) as url:
        result = subprocess.run(
            [str(SURGE), "run", str(scenario), "--host", url, "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 3, result.stdout + result.stderr
    warnings = [line for line in result.stderr.splitlines() if "need the embedded cluster" in line]
    assert len(warnings) == 1
    with (out / "events.csv").open(newline="", encoding="utf-8") as handle:
        events = {(row["kind"], row["target"]) for row in csv.DictReader(handle)}
    assert {
        ("fault_skipped", "primary"),
        ("fault_injected", "svc"),
        ("fault_cleared", "svc"),
        ("fault_failed", "broken"),
        ("fault_injected", "outlasting"),
        ("fault_cleared", "outlasting"),
    } <= events
    assert marker.exists()
    assert outlasting.exists(), "a fault that outlasts the run is undone when the run ends"
