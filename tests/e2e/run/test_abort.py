"""The live SLO guard (`[[abort]]`) against a target that starts failing, plus rule validation.

One run covers both promises: a 2 s burst of 50 % errors under a 5 s window (at most 0.2 of the window's
attempts) does not trip `error_ratio > 0.25`; 50 % errors from t = ERRORS_FROM_S on trip it by
t <= ERRORS_FROM_S + window + 1, after which the target's own request log shows no new arrival.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from loadtests.orchestration.locust_process import locust_command
from tests.support.procs import ROOT, surge

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

# The guard judges whole windows of complete seconds, the first one ending at second WINDOW_S - 1: the burst
# (seconds 1 and 2) is judged in the windows ending at 4, 5 and 6, and the errors from ERRORS_FROM_S share no
# window with it.
BURST_S = (1.0, 3.0)
ERRORS_FROM_S = 7.0
WINDOW_S = 5

SCENARIO = f"""
name = "abort-me"
duration_s = 30
seed = 5
[population]
users = 300
[[rate]]
at_s = 0
per_s = 20
[[rate]]
at_s = 30
per_s = 20
[client]
max_retries = 0
[arrivals]
process = "even"
pool = 40
[[abort]]
metric = "error_ratio"
above = 0.25
window_s = {WINDOW_S}
grace_s = 2
"""


def _target(tmp_path: Path) -> tuple[subprocess.Popen[str], str, Path]:
    log = tmp_path / "requests.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.run.flaky_target", str(log)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    found = re.search(r"listening on (http://\S+)", process.stdout.readline())
    assert found, "the flaky target did not start"
    return process, found.group(1), log


def test_sustained_errors_abort_the_run_and_a_short_burst_does_not(tmp_path: Path) -> None:
    scenario = tmp_path / "abort.toml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "run"
    target, url, log = _target(tmp_path)
    try:
        running = subprocess.Popen(
            [sys.executable, "-m", "loadtests.cli.main", "run", str(scenario), "--host", url, "--out", str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 30
        while not (out / "meta.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        t0 = json.loads((out / "meta.json").read_text())["started_unix"]
        spans = [[t0 + BURST_S[0], t0 + BURST_S[1]], [t0 + ERRORS_FROM_S, t0 + 1000]]
        body = json.dumps({"error_spans": spans}).encode()
        request = urllib.request.Request(f"{url}/control", data=body, method="POST")  # noqa: S310 - loopback
        urllib.request.urlopen(request, timeout=5).close()  # noqa: S310 - the flaky target on loopback
        output, _ = running.communicate(timeout=90)
    finally:
        target.kill()
        target.communicate()
    assert running.returncode == 1, output
    summary = json.loads((out / "summary.json").read_text())
    aborted = summary["aborted"]
    assert aborted["rule"] == f"error_ratio > 0.25 over {WINDOW_S} s", aborted
    assert ERRORS_FROM_S <= aborted["at_s"] <= ERRORS_FROM_S + WINDOW_S + 1, "the burst tripped it, or too late"
    assert summary["stopped"]["by"] == "abort" and summary["interrupted"] is False
    assert "error_ratio &gt; 0.25" in (out / "report.html").read_text() or "error_ratio > 0.25" in output
    junit = (out / "junit.xml").read_text()
    assert 'name="aborted"' in junit and "<failure" in junit
    stop_unix = json.loads((out / "stop.json").read_text())["at_unix"]
    arrivals = [float(line) for line in log.read_text().split()]
    assert arrivals and max(arrivals) <= stop_unix + 1.0, f"requests {max(arrivals) - stop_unix:.2f} s after the abort"
    totals = summary["totals"]
    assert totals["offered"] == totals["sent"] + totals["dropped"], totals


@pytest.mark.parametrize(
    ("rule", "needle"),
    [
        ('metric = "latency"\nabove = 1', "abort.0.metric"),
        ('metric = "error_ratio"\nabove = 0.5\nwindow_s = -1', "abort.0.window_s"),
        ('metric = "error_ratio"\nabove = 1.5', "abort.0"),
        ('metric = "p99_ms"\nabove = 100\nwindw_s = 5', "windw_s"),
    ],
)
def test_bad_abort_rules_exit_2_before_anything_starts(rule: str, needle: str, tmp_path: Path) -> None:
    scenario = tmp_path / "bad.toml"
    scenario.write_text(SCENARIO.split("[[abort]]")[0] + "[[abort]]\n" + rule + "\n")
    result = surge("run", str(scenario), "--out", str(tmp_path / "run"), timeout_s=60, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_no_abort_reaches_the_locust_command(tmp_path: Path) -> None:
    common = {"scenario_ref": "double11", "scale": 1.0, "duration_s": 10.0, "target": "http://127.0.0.1:1",
              "run_dir": tmp_path, "start_unix": 0.0, "workers": 1}  # fmt: skip
    assert "--surge-no-abort" in locust_command(**common, abort=False)  # type: ignore[arg-type]
    assert "--surge-no-abort" not in locust_command(**common)  # type: ignore[arg-type]
