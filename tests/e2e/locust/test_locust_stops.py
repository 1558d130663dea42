"""A test stopped early in Locust's web UI: the stop is recorded (when, by whom), arrivals
users had already claimed are cancelled so offered = sent + dropped holds, the charts and verdicts end at the
stop, and a user's stop — even 0.05 s after the start — is never blamed on the generator. A plain headless
`locust -f` run stopped with Ctrl-C is recorded the same way."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from reports.finalize import finalize_run
from tests.support.procs import LOCUSTFILE, ROOT, free_port, replica

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

SCENARIO = """
name = "web-ui-stop"
duration_s = 30
seed = 4
[population]
users = 300
[[rate]]
at_s = 0
per_s = 10
[[rate]]
at_s = 30
per_s = 10
[arrivals]
pool = 40   # users claim arrivals up to 4 s ahead and sleep towards them: what the stop must cancel
"""


def _post(url: str, data: dict[str, object] | None = None) -> dict[str, object]:
    body = urllib.parse.urlencode(data).encode() if data is not None else b""
    request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310 - Locust's UI on loopback
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        found: dict[str, object] = json.loads(response.read() or b"{}")
        return found


@pytest.mark.parametrize("stop_after_s", [0.05, 3.0])
def test_a_web_ui_stop_is_recorded_and_cuts_the_run(stop_after_s: float, tmp_path: Path) -> None:
    scenario = tmp_path / "web.toml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "run"
    with replica(tmp_path) as host:
        port = free_port()
        command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", host, "--scenario", str(scenario),
                   "--surge-out", str(out), "--web-host", "127.0.0.1", "--web-port", str(port),
                   "--loglevel", "WARNING"]  # fmt: skip
        with (tmp_path / "locust.log").open("wb") as log:
            locust = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            ui = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(ui + "/", timeout=1).close()  # noqa: S310
                    break
                except OSError:
                    assert time.monotonic() < deadline, (tmp_path / "locust.log").read_text()
                    time.sleep(0.1)
            assert _post(ui + "/swarm", {"user_count": 1, "spawn_rate": 1, "host": host})["success"]
            # the stop comes `stop_after_s` after the test began (its meta.json), not after the click: on a busy
            # machine the shape's first tick, which fires test_start, can come later than 0.05 s after it
            deadline = time.monotonic() + 20
            while not (out / "meta.json").exists():
                assert time.monotonic() < deadline, "the test did not start"
                time.sleep(0.01)
            time.sleep(stop_after_s)
            _post(ui + "/stop")
            deadline = time.monotonic() + 20
            while not (out / "generator.json").exists():
                assert time.monotonic() < deadline, "the recording did not finish after the stop"
                time.sleep(0.1)
        finally:
            locust.terminate()
            locust.wait(timeout=20)
    stop = json.loads((out / "stop.json").read_text())
    assert stop["by"] == "web-ui"
    summary = finalize_run(out)
    assert summary["interrupted"] is True and summary["stopped"]["by"] == "web-ui"
    assert summary["valid"] is True, summary["validity_reasons"]  # the user stopped it, not the generator
    totals = summary["totals"]
    assert totals["offered"] == totals["sent"] + totals["dropped"], totals
    if stop_after_s > 1:
        assert totals["offered"] > 0
    rows = (out / "timeseries.csv").read_text().strip().splitlines()[1:]
    assert len(rows) <= max(1, math.ceil(stop["at_s"])), "the charts must end at the stop"


def test_ctrl_c_of_plain_headless_locust_is_recorded_and_cuts_the_run(tmp_path: Path) -> None:
    scenario = tmp_path / "plain.toml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "run"
    with replica(tmp_path) as host:
        command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", host,
                   "--scenario", str(scenario), "--surge-out", str(out), "--loglevel", "WARNING",
                   "--only-summary"]  # fmt: skip
        with (tmp_path / "locust.log").open("wb") as log:
            locust = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            deadline = time.monotonic() + 30
            while not (out / "meta.json").exists():
                assert time.monotonic() < deadline, (tmp_path / "locust.log").read_text()
                time.sleep(0.1)
            t0 = json.loads((out / "meta.json").read_text())["started_unix"]
            time.sleep(max(0.0, t0 + 2.5 - time.time()))
            os.kill(locust.pid, signal.SIGINT)
            assert locust.wait(timeout=30) is not None
        finally:
            if locust.poll() is None:
                locust.kill()
                locust.wait()
    stop = json.loads((out / "stop.json").read_text())
    assert stop["by"] == "sigint" and 2.0 <= stop["at_s"] <= 5.0, stop
    summary = finalize_run(out)
    assert summary["valid"] is True, summary["validity_reasons"]
    totals = summary["totals"]
    assert totals["offered"] == totals["sent"] + totals["dropped"] and totals["offered"] > 0, totals
