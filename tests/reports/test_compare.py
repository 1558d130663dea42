"""A comparison reads each run's figures as measured when it finished (runfolder.figures), never re-measured.

Read back from a finished folder (summary.json, timeseries.csv, meta.json), the figures are exactly what the
run's analysis measured — the oracle below derives them from the `Analysis` the way the comparison once did — so
comparing two folders gives the very rows comparing their analyses gave.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest

from reports import hdr
from reports.analysis import analyse
from reports.compare import compare
from reports.finalize import finalize_run
from reports.frames import load_run
from reports.measure import counters, latency
from runfolder.figures import Figures, read_figures
from runfolder.layout import RunFolderError
from runfolder.outcomes import ADMITTED, GOOD
from tests.reports.runs import degrade, finished

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def analysed(run_dir: Path) -> Figures:
    """The figures of a folder measured afresh from its frames: what the comparison used to re-measure."""
    analysis = analyse(load_run(run_dir))
    windows = analysis.frames.windows
    active = windows[windows["offered"] > 0]
    measured = latency.latency_summary(analysis.overall_intended)
    recoveries = [entry["recover_s"] for entry in analysis.recovery if entry["recover_s"] is not None]
    return Figures(
        label=f"{analysis.frames.meta.scenario} ({run_dir.name})",
        meta=analysis.frames.meta.model_dump(mode="json"),
        good_per_s=tuple(int(good) for good in counters.class_sum(active, GOOD)),
        offered_per_s=float(active["offered"].mean()) if not active.empty else None,
        p50_ms=measured["p50_ms"],
        p95_ms=measured["p95_ms"],
        p99_ms=measured["p99_ms"],
        max_ms=measured["max_ms"],
        p99_interval_ms=hdr.percentile_interval_ms(analysis.overall_intended, 99.0),
        success_ratio=counters.success_ratio(windows),
        admitted=int(counters.class_sum(windows, ADMITTED).sum()),
        worst_recovery_s=max(recoveries) if recoveries else None,
    )


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """The committed run and a copy of it 3x slower with one success in ten turned into an error."""
    base, candidate = tmp_path / "base", tmp_path / "candidate"
    shutil.copytree(FIXTURES / "run_small", base)
    shutil.copytree(FIXTURES / "run_small", candidate)
    degrade(candidate, latency_factor=3.0, fail_every=10)
    return finished(base), finished(candidate)


@pytest.mark.parametrize("fixture", ["run_small", "run_recorded"])
def test_a_finished_folders_figures_are_exactly_what_its_analysis_measured(fixture: str, tmp_path: Path) -> None:
    run_dir = tmp_path / fixture
    shutil.copytree(FIXTURES / fixture, run_dir)
    figures = read_figures(finished(run_dir))
    assert figures == analysed(run_dir)
    assert figures.p99_interval_ms is not None and figures.good_per_s and figures.admitted > 0


def test_comparing_finished_folders_gives_the_rows_comparing_their_analyses_gave(pair: tuple[Path, Path]) -> None:
    base, candidate = pair
    comparison = compare(read_figures(base), read_figures(candidate))
    assert comparison == compare(analysed(base), analysed(candidate))
    assert comparison.regressed and [row.metric for row in comparison.rows if row.regressed] == [
        "goodput",
        "p99",
        "success ratio",
    ]


def test_surge_runs_comparison_is_the_one_surge_compare_gives_later(pair: tuple[Path, Path]) -> None:
    """The candidate compared on the figures it is about to write equals it compared once they are written."""
    base, candidate = pair
    summary = finalize_run(candidate, read_figures(base))
    assert summary["comparison"] == asdict(compare(read_figures(base), read_figures(candidate)))
    written = json.loads((candidate / "summary.json").read_text(encoding="utf-8"))
    assert written["comparison"]["regressed"] is True
    assert list(written["comparison"]) == ["base", "candidate", "regressed", "unlike", "rows"]


def test_summary_keeps_the_p99_interval_a_comparison_reads(run_dir: Path) -> None:
    intended = finalize_run(run_dir)["latency_ms"]["intended"]
    low, high = intended["p99_interval_ms"]
    assert low <= intended["p99_ms"] <= high


def test_a_folder_that_never_finished_has_no_figures(run_dir: Path) -> None:
    with pytest.raises(RunFolderError, match=r"has no summary\.json") as caught:
        read_figures(run_dir)
    assert f"`python -m reports {run_dir}`" in str(caught.value)


def test_a_timeseries_without_the_counters_is_one_readable_error(run_dir: Path) -> None:
    (finished(run_dir) / "timeseries.csv").write_text("t_s,offered\n0,5\n", encoding="utf-8")
    with pytest.raises(RunFolderError, match=r"timeseries\.csv does not hold a run's seconds"):
        read_figures(run_dir)
