"""How long attempts took, from the windows' HDR histograms merged exactly (never averaged percentiles).

Latency is always the intended-time latency (done − intended, free of coordinated omission) of admitted attempts
unless a function says otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reports import hdr
from runfolder.outcomes import ADMITTED

PERCENTILES = (50.0, 95.0, 99.0)


def _select(latency: pd.DataFrame, kind: str, classes: tuple[str, ...]) -> pd.DataFrame:
    return latency[(latency["kind"] == kind) & latency["cls"].isin(classes)]


def merged_counts(
    latency: pd.DataFrame,
    kind: str = "intended",
    classes: tuple[str, ...] = ADMITTED,
    start_s: float | None = None,
    end_s: float | None = None,
) -> hdr.IntArray:
    """One dense HDR bucket array over the seconds [start_s, end_s): the exact merge of the windows' histograms."""
    rows = _select(latency, kind, classes)
    if start_s is not None:
        rows = rows[rows["t"] >= start_s]
    if end_s is not None:
        rows = rows[rows["t"] < end_s]
    return hdr.dense(rows["idx"].to_numpy(np.int64), rows["count"].to_numpy(np.int64))


def latency_summary(counts: hdr.IntArray) -> dict[str, Any]:
    """p50 / p95 / p99 / p99.9 / max in ms of one merged histogram, and the p99's interval (what a comparison
    with another run holds as the p99's noise, `hdr.percentile_interval_ms`)."""
    p50, p95, p99, p999 = hdr.percentiles_ms(counts, [50.0, 95.0, 99.0, 99.9])
    return {
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "p999_ms": p999,
        "max_ms": hdr.max_ms(counts),
        "p99_interval_ms": hdr.percentile_interval_ms(counts, 99.0),
    }


def p99_ms(latency: pd.DataFrame, start_s: float | None = None, end_s: float | None = None) -> float | None:
    """The intended-time p99 of admitted attempts over the seconds [start_s, end_s) (the whole run without bounds)."""
    counts = merged_counts(latency, start_s=start_s, end_s=end_s)
    return hdr.percentiles_ms(counts, [99.0])[0]


def latency_per_second(
    latency: pd.DataFrame, seconds: pd.Index, kind: str = "intended", classes: tuple[str, ...] = ADMITTED
) -> pd.DataFrame:
    """p50 / p95 / p99 / max ms for every second (NaN where nothing completed), vectorised over all seconds.

    The sparse buckets are sorted by (second, bucket) and merged, so one global cumulative sum and one
    searchsorted per percentile answer every second at once: an hour of windows takes a fraction of a second.
    """
    columns = [f"p{int(p)}_ms" for p in PERCENTILES] + ["max_ms"]
    result = pd.DataFrame(np.nan, index=seconds, columns=columns)
    rows = _select(latency, kind, classes)
    if rows.empty:
        return result
    size = hdr.bucket_table().size
    key = rows["t"].to_numpy(np.int64) * size + rows["idx"].to_numpy(np.int64)
    order = np.argsort(key, kind="stable")
    key = key[order]
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    counts = np.add.reduceat(rows["count"].to_numpy(np.int64)[order], first)
    t, idx = key[first] // size, key[first] % size
    starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
    ends = np.r_[starts[1:], t.size]
    cumulative = np.cumsum(counts)
    base = np.r_[0, cumulative][starts]
    total = cumulative[ends - 1] - base
    table = hdr.bucket_table().highest_us
    group_seconds = t[starts]
    for pct, column in zip(PERCENTILES, columns, strict=False):
        target = np.maximum(np.floor(pct * total / 100.0 + 0.5).astype(np.int64), 1)
        position = np.searchsorted(cumulative, base + target, side="left")
        result.loc[group_seconds, column] = table[idx[position]] / 1000.0
    result.loc[group_seconds, "max_ms"] = table[idx[ends - 1]] / 1000.0
    return result
