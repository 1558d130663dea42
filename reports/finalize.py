"""The end of a run: from the run folder to timeseries.csv, summary.json, junit.xml and report.html.

`surge run` calls `finalize_run` once the load has stopped and the ledger copy is in place; the returned summary
carries the exit code (rules in `reports.analysis`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reports import compare
from reports.analysis import analyse, summary, timeseries
from reports.frames import load_run
from reports.junit import junit_xml
from reports.render.page import render_report
from runfolder.layout import RunFolder, write_json


def finalize_run(run_dir: Path, baseline: Path | None = None) -> dict[str, Any]:
    """Write every derived file of the run folder and return the summary (also written as summary.json).

    With a baseline run folder, the comparison goes into the summary (`comparison`) and the report; a regression
    against the baseline does not change the exit code, which README ties to SLOs and invariants only.
    Raises `runfolder.layout.RunFolderError` when `run_dir` (or `baseline`) is not a readable run folder.
    """
    analysis = analyse(load_run(run_dir))
    comparison = compare.compare(analyse(load_run(baseline)), analysis) if baseline is not None else None
    result = summary(analysis).model_dump(mode="json")
    if comparison is not None:
        result["comparison"] = comparison.as_dict()
    timeseries(analysis).to_csv(RunFolder(run_dir).timeseries, index=False)
    write_json(RunFolder(run_dir).summary, result)
    RunFolder(run_dir).junit.write_text(junit_xml(analysis.frames.meta.scenario, analysis.verdicts), encoding="utf-8")
    RunFolder(run_dir).report.write_text(render_report(analysis, comparison), encoding="utf-8")
    return result
