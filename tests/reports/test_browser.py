"""report.html in a real headless Chromium, network off: no JavaScript error, every chart drawn with data,
and no script from a user's file ever runs. Fails (never skips) in CI when Chromium cannot run."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from reports.finalize import finalize_run
from tests.reports.cdp import offline_page
from tests.reports.runs import edit_meta
from tests.reports.test_finalize import STEPS

pytestmark = pytest.mark.browser

CHARTS = """JSON.stringify({
  error: document.body.dataset.chartError || null,
  drawn: Number(document.body.dataset.charts || 0),
  title: document.title,
  verdicts: document.querySelectorAll("tr.verdict").length,
  charts: [...document.querySelectorAll(".chart")].map(el => ({
    id: el.id,
    svg: el.querySelector("svg.main-svg") !== null,
    points: (el.data || []).map(trace => (trace.y || []).length),
  })),
})"""


def chromium() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if found is None:
        message = "Chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


async def open_report(report: Path, profile: Path) -> tuple[dict[str, Any], Any]:
    try:
        async with offline_page(chromium(), profile) as page:
            await page.send("Page.navigate", url=report.as_uri())
            await page.wait_for("document.body !== null && document.body.dataset.ready === '1'", timeout_s=60)
            return json.loads(await page.evaluate(CHARTS)), page.log
    except (RuntimeError, TimeoutError, OSError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Chromium could not run: {exc}")
        pytest.skip(f"Chromium could not run here: {exc}")


async def test_report_opens_offline_without_errors_and_every_chart_has_data(run_dir: Path, tmp_path: Path) -> None:
    (run_dir / "steps.csv").write_text(STEPS, encoding="utf-8")  # so the knee charts are drawn too
    summary = finalize_run(run_dir)
    result, log = await open_report(run_dir / "report.html", tmp_path / "profile")
    assert log.console_errors == [] and log.exceptions == [] and log.dialogs == []
    assert log.remote_requests == []
    assert result["error"] is None
    drawn = {chart["id"] for chart in result["charts"]}
    assert {"throughput", "latency_intended", "latency_service", "hdr", "knee", "knee_p99"} <= drawn
    assert result["drawn"] == len(result["charts"])
    for chart in result["charts"]:
        assert chart["svg"], chart["id"]
        assert chart["points"] and all(n > 0 for n in chart["points"]), chart["id"]
    verdicts = summary["slos"] + summary["invariant_verdicts"] + summary["run_verdicts"]
    assert result["verdicts"] == len(verdicts)


async def test_a_script_in_a_scenario_name_never_runs(run_dir: Path, tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    edit_meta(run_dir, scenario=evil, description="<img src=x onerror=alert(2)>")
    with (run_dir / "events.csv").open("a", encoding="utf-8") as handle:
        handle.write('3.0,0,chaos,fault_injected,"<img src=x onerror=alert(3)>",x\n')
    finalize_run(run_dir)
    result, log = await open_report(run_dir / "report.html", tmp_path / "profile")
    assert log.dialogs == [] and log.exceptions == [] and log.console_errors == []
    assert result["title"] == f"surge — {evil}"
    assert result["error"] is None and result["drawn"] == len(result["charts"])
