"""`surge compare` on run folders whose meta.json carries hostile text: every line it prints stays harmless."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from reports.finalize import finalize_run
from tests.errortext.test_console_text import HOSTILE
from tests.reports.runs import edit_meta


def test_surge_compare_prints_a_hostile_scenario_name_on_one_harmless_line(run_dir: Path, tmp_path: Path) -> None:
    """A meta.json scenario name `x\\n::error title=INJ::…` printed a raw `::error` line from `surge compare`."""
    edit_meta(run_dir, scenario=HOSTILE)
    finalize_run(run_dir)
    other = tmp_path / "other"
    subprocess.run(["cp", "-r", str(run_dir), str(other)], check=True)
    done = subprocess.run(
        [sys.executable, "-m", "loadtests.cli.main", "compare", str(run_dir), str(other)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "60"},
    )
    assert done.returncode == 0, done.stderr
    lines = (done.stdout + done.stderr).splitlines()
    assert lines and not [line for line in lines if line.strip().startswith("::") or "\x1b" in line]
    assert "x\\n: :error" in done.stdout.replace("\n", "")
