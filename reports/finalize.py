"""The end of a run: from the run folder to timeseries.csv, summary.json, junit.xml and report.html.

`surge run` calls `finalize_run` once the load has stopped and the ledger copy is in place: the run is measured
and judged once (`reports.analysis`), compared with a baseline's figures as they were measured when that run
finished (`runfolder.figures`), and every file only formats the result; the returned summary carries the exit
code.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from reports.analysis import analyse
from reports.compare import compare
from reports.frames import load_run
from reports.junit import junit_xml
from reports.render.page import render_report
from reports.summary import figures, summary, timeseries
from runfolder.figures import Figures
from runfolder.layout import RunFolder, write_json


def finalize_run(run_dir: Path, baseline: Figures | None = None) -> dict[str, Any]:
    """Write every derived file of the run folder and return the summary (also written as summary.json).

    With a baseline's figures (`runfolder.figures.read_figures`), the comparison goes into the summary
    (`comparison`) and the report; a regression against the baseline does not change the exit code, which README
    ties to SLOs and invariants only. Raises `runfolder.layout.RunFolderError` when `run_dir` is not a readable
    run folder.
    """
    frames = load_run(run_dir)
    analysis = analyse(frames)
    measured, seconds = summary(analysis), timeseries(analysis)
    result = measured.model_dump(mode="json")
    comparison = None
    if baseline is not None:
        comparison = compare(baseline, figures(analysis, measured, seconds))
        result["comparison"] = asdict(comparison)
    folder = RunFolder(run_dir)
    seconds.to_csv(folder.timeseries, index=False)
    write_json(folder.summary, result)
    folder.junit.write_text(junit_xml(analysis.frames.meta.scenario, analysis.verdicts), encoding="utf-8")
    folder.report.write_text(render_report(analysis, comparison), encoding="utf-8")
    return result
