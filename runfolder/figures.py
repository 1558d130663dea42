"""The figures of one finished run that a comparison of two runs reads: measured once, when the run finished.

A run is measured and judged once, at its end (`reports.finalize`), and summary.json and timeseries.csv keep
what was measured. A comparison — `surge compare`, a `--baseline` — reads those figures back instead of
measuring the folder again, so a baseline is compared on the very numbers its own report showed. The run just
measured builds the same object from the summary and the per-second rows it is about to write (`Figures.of`),
so both sides of a comparison come through one door. A folder without summary.json never finished: it has no
figures, and reading it says how to finish it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runfolder.layout import RunFolder, RunFolderError, read_model
from runfolder.models import RunMeta, Summary, read_meta
from runfolder.outcomes import ADMITTED, GOOD


@dataclass(frozen=True, slots=True)
class Figures:
    """What `reports.compare` holds side by side for one run; latency is intended-time, of admitted attempts."""

    label: str  # "scenario (folder name)"
    meta: dict[str, Any]  # meta.json as JSON: what `reports.comparable.unlike` holds against the other run's
    good_per_s: tuple[int, ...]  # good attempts in each second with offered load, in time order
    offered_per_s: float | None  # the mean of arrivals offered over the seconds with offered load
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    p99_interval_ms: tuple[float, float] | None  # where the p99 could lie by chance alone (summary.json)
    success_ratio: float | None
    admitted: int
    worst_recovery_s: float | None

    @classmethod
    def of(cls, run_dir: Path, meta: RunMeta, summary: Summary, seconds: Iterable[Mapping[Any, Any]]) -> Figures:
        """From a run's summary and its timeseries.csv rows (column name → count), as written or about to be."""
        counted = [(int(row["offered"]), sum(int(row[name]) for name in GOOD)) for row in seconds]
        active = [(offered, good) for offered, good in counted if offered > 0]
        intended = summary.latency_ms["intended"]
        totals = summary.totals.model_dump()
        recoveries = [entry["recover_s"] for entry in summary.recovery if entry.get("recover_s") is not None]
        return cls(
            label=f"{meta.scenario} ({run_dir.name})",
            meta=meta.model_dump(mode="json"),
            good_per_s=tuple(good for _, good in active),
            offered_per_s=sum(offered for offered, _ in active) / len(active) if active else None,
            p50_ms=intended.p50_ms,
            p95_ms=intended.p95_ms,
            p99_ms=intended.p99_ms,
            max_ms=intended.max_ms,
            p99_interval_ms=intended.p99_interval_ms,
            success_ratio=summary.success_ratio,
            admitted=sum(int(totals[name]) for name in ADMITTED),
            worst_recovery_s=max(recoveries) if recoveries else None,
        )


def not_finished(run_dir: Path) -> str:
    """Why a folder without summary.json has no figures, and the command that writes them."""
    return f"{run_dir} has no summary.json: the run never finished (`python -m reports {run_dir}` finishes it)"


def read_figures(run_dir: Path) -> Figures:
    """A finished run folder's figures: meta.json, summary.json and timeseries.csv, read and never re-measured.
    RunFolderError (one line) when the folder is not a run folder, never finished, or a file does not fit."""
    meta = read_meta(run_dir)
    folder = RunFolder(run_dir)
    if not folder.summary.is_file():
        raise RunFolderError(not_finished(run_dir))
    summary = read_model(folder.summary, Summary)
    if "intended" not in summary.latency_ms:
        raise RunFolderError(f"{folder.summary} has no latency_ms.intended")
    try:
        with folder.timeseries.open(encoding="utf-8", newline="") as handle:
            return Figures.of(run_dir, meta, summary, csv.DictReader(handle))
    except OSError as exc:
        raise RunFolderError(f"{folder.timeseries} cannot be read ({exc.strerror})") from None
    except (KeyError, ValueError, TypeError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
        raise RunFolderError(f"{folder.timeseries} does not hold a run's seconds ({problem})") from None
