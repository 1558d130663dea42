"""`surge run` starts Locust with nothing of the caller's Locust configuration: no ./locust.conf, no
~/.locust.conf, no [tool.locust] of ./pyproject.toml, no LOCUST_* variable."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from loadtests.orchestration.locust_process import locust_command, locust_environment
from tests.support.procs import replica, surge

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

SCENARIO = """
name = "isolated"
duration_s = 3
seed = 3
[population]
users = 300
bill_fen = { median = 100000, p99 = 2000000 }
[[rate]]
at_s = 0
per_s = 20
[arrivals]
process = "even"
pool = 10
"""
# Each line would change or break the run if Locust read it: a master waiting for workers that never come, an
# exit code of its own, a metrics port nobody may bind, another run folder and scenario.
HOSTILE = """
master = true
expect-workers = 3
exit-code-on-error = 7
metrics-port = 1
surge-out = /nonexistent/elsewhere
scenario = no-such-scenario
"""


def test_locust_environment_drops_locust_variables_and_moves_home(tmp_path: Path) -> None:
    env = locust_environment({"LOCUST_RUN_TIME": "1s", "locust_users": "3", "PATH": "/bin", "HOME": "/root"}, tmp_path)
    assert env["HOME"] == str(tmp_path) and env["PATH"] == "/bin"
    assert not [name for name in env if name.upper().startswith("LOCUST_")]
    assert env["PYTHONUSERBASE"]  # a user-site install of surge stays importable with HOME moved


def test_surge_run_analyses_its_folder_itself_and_locust_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --surge-managed the locustfile would write summary.json, junit.xml and report.html at its end
    too (a plain run's verdict), before surge run has collected the ledger and the events."""
    monkeypatch.chdir(tmp_path)
    Path("mine.toml").write_text(SCENARIO, encoding="utf-8")
    command = locust_command(
        scenario_ref="mine.toml", scale=1.0, duration_s=10, target="http://127.0.0.1:1", run_dir=Path("r"),
        start_unix=0.0, workers=1, metrics_port=9999,
    )  # fmt: skip
    assert "--surge-managed" in command
    assert command[command.index("--metrics-port") + 1] == "9999"
    # Locust runs in r/locust/, so every path it is given is absolute
    for flag in ("--scenario", "--surge-out", "--csv", "--html", "--logfile"):
        assert Path(command[command.index(flag) + 1]).is_absolute(), flag


def test_a_hostile_locust_configuration_around_surge_run_changes_nothing(tmp_path: Path) -> None:
    caller, home = tmp_path / "caller", tmp_path / "home"
    caller.mkdir()
    home.mkdir()
    (caller / "locust.conf").write_text(HOSTILE, encoding="utf-8")
    (caller / "pyproject.toml").write_text("[tool.locust]\n" + HOSTILE.replace("-", "_"), encoding="utf-8")
    (home / ".locust.conf").write_text(HOSTILE, encoding="utf-8")
    (caller / "isolated.toml").write_text(SCENARIO, encoding="utf-8")
    env = {**os.environ, "HOME": str(home), "LOCUST_MODE_MASTER": "true", "LOCUST_EXPECT_WORKERS": "3"}
    with replica(tmp_path) as url:
        result = surge("run", "isolated.toml", "--host", url, "--out", "run", timeout_s=120, cwd=caller, env=env)
    summary_path = caller / "run" / "summary.json"
    assert summary_path.is_file(), result.stdout[-2000:] + result.stderr[-3000:]
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    # --host: no ledger of ours, so the invariants are unknown and the run exits 3 ("not proven") even when every
    # other verdict held; what matters here is that the run is the one surge asked for, and that it ran.
    assert result.returncode == summary["exit_code"], result.stderr[-3000:]
    assert {v["passed"] for v in summary["invariant_verdicts"]} == {None}
    assert summary["scenario"] == "isolated" and summary["duration_s"] == 3
    assert "Traceback" not in (caller / "run" / "locust" / "stdout.log").read_text(encoding="utf-8")
    assert summary["totals"]["offered"] == 60  # 3 s at 20/s, evenly spaced: the scenario, unscaled
