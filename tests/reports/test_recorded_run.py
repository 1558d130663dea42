"""The analysis on a real recording: tests/fixtures/run_recorded is a 30 s `surge run double11 --scale 0.25`
on the embedded cluster (the midnight spike and a kill of the primary), trimmed to the files `reports` reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from reports.finalize import finalize_run

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "run_recorded"


def test_recorded_double11_passes_and_the_page_says_what_summary_says(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(RECORDED, run_dir)
    summary = finalize_run(run_dir)
    assert summary["exit_code"] == 0
    assert summary["valid"] is True
    assert summary["invariants"] == {"lost": 0, "phantom": 0, "duplicate": 0, "over_cap": 0}
    kill = next(r for r in summary["recovery"] if r["event"].startswith("kill"))
    assert kill["detect_s"] is not None and 0 <= kill["detect_s"] < 1.0
    assert kill["failover_s"] is not None and kill["failover_s"] >= kill["detect_s"]
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    for slo in summary["slos"]:
        assert slo["name"] in page
    assert "every SLO and invariant held" in page
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["slos"] == summary["slos"]
    run_checks = ["generator_valid", "fault_failures"]  # the kill was injected: no fault step failed
    assert [v["name"] for v in summary["run_verdicts"]] == run_checks
    assert (run_dir / "junit.xml").read_text().count("<testcase") == len(summary["slos"]) + 4 + len(run_checks)
