"""Plain `locust -f loadtests/locustfile.py` refuses what a load tool must never do, before any request."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.procs import LOCUSTFILE, ROOT


def locust(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-t", "3s", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT, env=env, check=False)


def test_a_non_loopback_host_is_refused_with_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SURGE_ALLOW_REMOTE"}
    result = locust("--host", "http://192.0.2.10:8080", "--surge-out", str(tmp_path / "run"), env=env)
    assert result.returncode == 2
    assert "not a loopback address" in result.stderr and "SURGE_ALLOW_REMOTE=1" in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_bad_scenario_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "b"\nduration_s = 5\nrate = []\n', encoding="utf-8")
    result = locust("--host", "http://127.0.0.1:9", "--scenario", str(bad))
    assert result.returncode == 2
    assert "surge: scenario" in result.stderr and "'rate'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_scale_that_is_not_a_number_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = locust("--host", "http://127.0.0.1:9", "--scale", "lots", "--surge-out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "surge: --scale must be a number (got 'lots')" in result.stderr
    assert "Traceback" not in result.stderr
