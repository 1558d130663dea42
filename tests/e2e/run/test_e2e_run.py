"""`surge run` end to end on a tiny scenario: the embedded cluster, Locust, a fault, the run folder of
docs/internals.md §5, exit 0 when the SLOs hold and exit 1 when one cannot — the CI gate users rely on."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.procs import surge

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

TINY = """
name = "{name}"
description = "a 20 s smoke run with a latency fault on one replica"
duration_s = 20
seed = 7

[population]
users = 500
cards_per_user = [1, 2]
bill_fen = {{ median = 100000, p99 = 6000000 }}

[[rate]]
at_s = 0
per_s = 15
[[rate]]
at_s = 20
per_s = 15

[[faults]]
at_s = 8
action = "latency"
target = "primary"
duration_s = 4
ratio = 0.5
latency_ms = 50

[arrivals]
pool = 60

[slo]
min_success_ratio = 0.95
max_p99_ms = {p99}
max_recovery_s = 10
"""

RUN_FILES = ["report.html", "summary.json", "timeseries.csv", "events.csv", "junit.xml", "ledger.sqlite", "meta.json"]


def surge_run(
    tmp_path: Path, name: str, p99: float, scenario_name: str = "tiny"
) -> tuple[subprocess.CompletedProcess[str], Path]:
    scenario = tmp_path / f"{name}.toml"
    scenario.write_text(TINY.format(p99=p99, name=scenario_name))
    out = tmp_path / name
    return surge("run", str(scenario), "--out", str(out), timeout_s=140), out


def test_tiny_run_passes_and_writes_the_run_folder(tmp_path: Path) -> None:
    result, out = surge_run(tmp_path, "ok", p99=3000)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    assert list((out / "locust").glob("*.csv")), "Locust's own CSV output is kept"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_code"] == 0
    assert summary["invariants"] == {"lost": 0, "phantom": 0, "duplicate": 0, "over_cap": 0}
    assert summary["totals"]["succeeded"] > 200
    assert summary["valid"] is True
    assert "report:" in result.stdout
    progress = [line for line in result.stderr.splitlines() if re.match(r"\s*\d+/20s  ", line)]
    assert len(progress) >= 3 and "\r" not in result.stderr, result.stderr  # a log: one status line every 5 s
    token = json.loads((out / "cluster" / "cluster.json").read_text()).get("admin_token")
    assert not token, "the admin token must not stay in the run folder"
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in {".json", ".html", ".csv", ".xml", ".jsonl", ".log"}:
            assert "Bearer " not in path.read_text(errors="replace"), path


def test_impossible_slo_exits_1_and_says_which(tmp_path: Path) -> None:
    """The scenario's name is hostile too: it must not start a line that GitHub Actions reads as a workflow
    command, on the run's first line, in the verdict table or anywhere else surge prints it."""
    hostile = "tiny\\n::error title=INJ::forged\\u001b[2J"
    result, out = surge_run(tmp_path, "strict", p99=0.001, scenario_name=hostile)
    assert result.returncode == 1, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    failed = [slo["name"] for slo in summary["slos"] if not slo["passed"]]
    assert any("p99" in name for name in failed)
    assert "FAIL" in result.stdout
    lines = (result.stdout + result.stderr).splitlines()
    assert not [line for line in lines if line.strip().startswith("::") or "\x1b" in line]
    assert "surge run tiny\\n: :error title=INJ: :forged\\x1b[2J (scale 1" in result.stderr
