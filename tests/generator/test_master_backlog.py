"""The master falling behind a worker's history is said, once, and kept for generator.json: a worker reports the
bytes its spool holds beyond what the master acknowledged, and past BACKLOG_WARN_BYTES the master warns that the
rows now wait on the worker's disk (docs/distributed.md). Run in a subprocess: the master imports Locust (gevent)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.procs import ROOT

SCRIPT = r"""
import json, logging, sys, time
from pathlib import Path
from types import SimpleNamespace

from locust.env import Environment

from loadtests.generator.recording.master import MasterRecording
from loadtests.generator.recording.writer import RunWriter
from loadtests.generator.stream import BACKLOG_WARN_BYTES

warnings = []
handler = logging.Handler()
handler.emit = lambda record: warnings.append(record.getMessage()) if record.levelno >= logging.WARNING else None
logging.getLogger("surge").addHandler(handler)

runner = SimpleNamespace(clients={}, register_message=lambda name, listener: None)
master = MasterRecording(Environment(), runner, lambda *args: None)
master.writer = RunWriter(Path(sys.argv[1]), t0=time.time())
reported = []
for index, backlog in ((0, BACKLOG_WARN_BYTES // 2), (1, BACKLOG_WARN_BYTES + 2**20), (0, BACKLOG_WARN_BYTES * 2)):
    message = SimpleNamespace(data={"index": index, "windows": [], "lag": None,
                                    "history": {"lines": 10, "backlog": backlog}})
    master._on_windows_message(message)
    reported.append({"warnings": len(warnings), "backlog_max": master.writer.backlog_max})
print(json.dumps({"steps": reported, "warnings": warnings, "bound": BACKLOG_WARN_BYTES}))
"""


def test_a_backlog_past_the_bound_is_warned_once_and_its_peak_kept(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "run")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    bound = found["bound"]
    assert bound == 16 * 2**20  # the bound docs/distributed.md states
    assert found["steps"] == [
        {"warnings": 0, "backlog_max": bound // 2},  # under the bound: nothing said
        {"warnings": 1, "backlog_max": bound + 2**20},  # past it: said, naming the worker
        {"warnings": 1, "backlog_max": 2 * bound},  # said once; the peak still kept for generator.json
    ]
    (warning,) = found["warnings"]
    assert "17 MiB behind worker-1's history" in warning and "wait on the worker's disk" in warning
