"""`python -m reports RUN_DIR`: the analysis a plain Locust run starts in a process of its own (plain_run.py).

The Locust process reads only its exit code, its last stderr line and summary.json, so those are the contract.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_reports(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "reports", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


def test_a_run_folder_gets_every_derived_file_and_exit_0(run_dir: Path) -> None:
    done = run_reports(str(run_dir), cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("summary.json", "junit.xml", "timeseries.csv", "report.html"):
        assert (run_dir / name).stat().st_size > 0, name
    assert json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))["exit_code"] == 0
    assert done.stderr == ""


def test_a_folder_that_cannot_be_analysed_is_one_line_and_exit_3(tmp_path: Path) -> None:
    done = run_reports(str(tmp_path / "absent"), cwd=tmp_path)
    assert done.returncode == 3
    assert len(done.stderr.splitlines()) == 1 and "not a directory" in done.stderr, done.stderr
    assert not (tmp_path / "absent").exists()


def test_a_wrong_command_line_is_exit_2(tmp_path: Path) -> None:
    done = run_reports(cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("usage: python -m reports RUN_DIR"), done.stderr
