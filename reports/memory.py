"""memory.csv (the gateway's RSS per process and second) → summary.json's `memory`: does memory stay flat?

Growth is measured from the first sample after a warm-up (a quarter of the run: caches, connection pools and
the allocator's arenas fill first) to the last sample of the load, per process; a replica restarted by a fault
is measured on its newest process only, since a fresh process always starts small.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from runfolder.layout import MEMORY_COLUMNS, RunFolder

WARMUP_SHARE = 0.25
MIB = 2**20


def read_memory(run_dir: Path) -> pd.DataFrame:
    """The samples, or an empty frame when the run had no embedded gateway to watch."""
    path = RunFolder(run_dir).memory
    if not path.exists():
        return pd.DataFrame(columns=list(MEMORY_COLUMNS))
    return pd.read_csv(path)


def memory_growth(samples: pd.DataFrame, duration_s: float) -> dict[str, dict[str, float]] | None:
    """{process: {"warm_mib", "end_mib", "growth"}} over [warm-up, end of load]; None without samples."""
    load = samples[(samples["t_s"] >= WARMUP_SHARE * duration_s) & (samples["t_s"] <= duration_s)]
    if load.empty:
        return None
    result: dict[str, dict[str, float]] = {}
    for name, rows in load.groupby("process", sort=True):
        newest = rows[rows["pid"] == rows["pid"].iloc[-1]]
        warm, end = float(newest["rss_bytes"].iloc[0]), float(newest["rss_bytes"].iloc[-1])
        result[str(name)] = {
            "warm_mib": round(warm / MIB, 1),
            "end_mib": round(end / MIB, 1),
            "growth": round((end - warm) / warm, 4) if warm > 0 else 0.0,
        }
    return result


def summarize(run_dir: Path, duration_s: float) -> dict[str, Any] | None:
    """summary.json's `memory` for a run folder."""
    return memory_growth(read_memory(run_dir), duration_s)
