"""`surge report RUN_DIR [--baseline BASE_RUN]`: rebuild report.html from a run folder, nothing else.

summary.json, junit.xml and timeseries.csv are left as `surge run` wrote them: a rebuilt page must never
change a verdict CI already recorded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from loadtests.errors import UsageError
from runfolder.figures import read_figures
from runfolder.layout import RunFolder, RunFolderError
from runfolder.models import read_meta


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run folder written by `surge run`")
    parser.add_argument("--baseline", metavar="BASE_RUN", type=Path, help="add a comparison with this run")


def run(args: argparse.Namespace) -> int:
    try:  # both are run folders at all (the baseline a finished one), before the report stack (pandas, plotly) loads
        read_meta(args.run_dir)
        baseline = read_figures(args.baseline) if args.baseline else None
    except RunFolderError as exc:
        raise UsageError(str(exc)) from exc
    from reports.analysis import analyse
    from reports.compare import compare
    from reports.frames import load_run
    from reports.render.page import render_report
    from reports.summary import figures, summary, timeseries

    try:
        analysis = analyse(load_run(args.run_dir))
    except RunFolderError as exc:
        raise UsageError(str(exc)) from exc
    comparison = None
    if baseline is not None:  # the page's own run as measured now, against the baseline as it was measured
        comparison = compare(baseline, figures(analysis, summary(analysis), timeseries(analysis)))
    target = RunFolder(args.run_dir).report
    target.write_text(render_report(analysis, comparison), encoding="utf-8")
    print(f"report: {target}")
    return 0
