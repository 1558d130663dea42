"""User-controlled text on a console (a scenario name in a meta.json from elsewhere, a fault's output, a
database error): one line, control characters escaped, no `::` that GitHub Actions could read as a command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reports.console_text import one_line
from reports.finalize import finalize_run
from tests.reports.runs import edit_meta

HOSTILE = "x\n::error title=INJ::forged\r\x1b[2J\x85\u2028end"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (HOSTILE, "x\\n: :error title=INJ: :forged\\r\\x1b[2J\\x85\\u2028end"),
        ("::add-mask::secret", ": :add-mask: :secret"),
        ("a:::b", "a: : :b"),
        ("tab\there\x00", "tab\\there\\x00"),
        ("http://[::1]:8080/v1 and [fe80::1]", "http://[::1]:8080/v1 and [fe80::1]"),
        ("双十一 12:30", "双十一 12:30"),
    ],
)
def test_one_line_escapes_controls_and_breaks_up_workflow_commands(text: str, shown: str) -> None:
    assert one_line(text) == shown


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
