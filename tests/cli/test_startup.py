"""A `surge` command refused at its arguments or files loads none of the report stack (pandas, plotly, the
analysis) nor the cluster's and the target ledger's (aiohttp, SQLAlchemy): they cost seconds on a busy machine,
and a usage error needs none of them to say its one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Runs the CLI in a fresh interpreter and reports the exit code and which heavy packages got imported.
PROBE = """
import json, sys
from loadtests.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
loaded = sorted({name.split(".")[0] for name in sys.modules} & {"pandas", "plotly", "jinja2", "sqlalchemy", "aiohttp"})
stack = sorted(name for name in sys.modules if name.split(".")[:2] in (["reports", "analysis"], ["reports", "frames"],
               ["reports", "render"], ["reports", "measure"], ["reports", "finalize"], ["reports", "forecast"]))
print(json.dumps({"code": code, "loaded": loaded + stack}))
"""

REFUSED = [
    ["run", "no-such-scenario"],
    ["run", "double11", "--baseline", "nowhere"],
    ["run", "double11", "--config", "missing.toml"],
    ["compare", "nowhere", "nowhere-either"],
    ["report", "nowhere"],
    ["verify", "nowhere"],
    ["find-capacity", "--slo-success", "1.5"],
    ["forecast", "missing.toml"],
    ["study", "no-such-study"],
]


@pytest.mark.parametrize("argv", REFUSED, ids=[" ".join(argv) for argv in REFUSED])
def test_a_refused_command_loads_no_report_stack(argv: list[str], tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["code"] == 2, result.stderr
    assert probe["loaded"] == [], f"surge {' '.join(argv)} imported {probe['loaded']} before refusing"
