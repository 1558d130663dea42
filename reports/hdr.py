"""HDR histograms as numpy bucket counts.

The recorder ships one encoded `HdrHistogram(1, 3_600_000_000, 3)` (microseconds) per outcome class and second.
The hdrhistogram package computes percentiles with a Python loop over ~23,000 buckets, far too slow for an hour
of windows, so here a histogram becomes a sparse `(bucket index, count)` pair once, and merging and percentiles
are numpy operations over the bucket tables. Percentile semantics match HdrHistogram's: the highest value
equivalent to the bucket where the cumulative count first reaches the target count.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt
from hdrh.codec import HdrHistogramEncoder
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_FIGURES = 3

IntArray = npt.NDArray[np.int64]


def new_histogram() -> HdrHistogram:
    """The one histogram shape every producer and consumer of a run folder agrees on (internals §5)."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


@dataclass(frozen=True, slots=True)
class BucketTable:
    """Per bucket index: the highest value equivalent to it, in microseconds."""

    highest_us: IntArray

    @property
    def size(self) -> int:
        return int(self.highest_us.size)


@cache
def bucket_table() -> BucketTable:
    """Built once from the library's own index arithmetic, so rounding can never drift from HdrHistogram's."""
    hist = new_histogram()
    highest = [hist.get_highest_equivalent_value(hist.get_value_from_index(i)) for i in range(hist.counts_len)]
    return BucketTable(highest_us=np.asarray(highest, dtype=np.int64))


def decode_sparse(encoded: str | bytes) -> tuple[IntArray, IntArray]:
    """Bucket indices and counts of the non-empty buckets of one encoded histogram.

    Decodes at the codec level: the C varint decoder reports the first and last non-empty bucket, so only that
    slice is scanned, and no HdrHistogram object is built (a third of the cost of `HdrHistogram.decode`).
    """
    payload = HdrHistogramEncoder.decode(encoded)
    header = payload.payload
    shape = (header.lowest_trackable_value, header.highest_trackable_value, header.significant_figures)
    if shape != (LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES):
        raise ValueError(f"histogram is HdrHistogram{shape}, expected {(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)}")
    found = payload.init_counts(bucket_table().size)
    if not found["total"]:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    low, high = int(found["min_nonzero_index"]), int(found["max_nonzero_index"])
    counts = np.frombuffer(payload.counts, dtype=np.uint64)[low : high + 1]
    index = np.flatnonzero(counts)
    return index + low, counts[index].astype(np.int64)


def dense(index: IntArray, counts: IntArray) -> IntArray:
    """Merge any number of sparse entries (repeated indices add up) into one full bucket array."""
    return np.bincount(index, weights=counts, minlength=bucket_table().size).astype(np.int64)


def percentiles_ms(counts: IntArray, percentiles: list[float]) -> list[float | None]:
    """Values at the given percentiles (0..100) of a dense bucket array, in milliseconds; None when empty."""
    total = int(counts.sum())
    if total == 0:
        return [None for _ in percentiles]
    cumulative = np.cumsum(counts)
    table = bucket_table().highest_us
    values: list[float | None] = []
    for pct in percentiles:
        target = max(int(min(pct, 100.0) * total / 100 + 0.5), 1)
        position = int(np.searchsorted(cumulative, target, side="left"))
        values.append(float(table[position]) / 1000.0)
    return values


def percentile_interval_ms(counts: IntArray, pct: float, z: float = 2.0) -> tuple[float, float] | None:
    """A distribution-free interval for the value at `pct`: the order statistics at ranks n·p ± z·√(n·p·(1−p)).

    This is how far the percentile of a sample of this size could move by chance alone (independent samples
    assumed), which is what `surge compare` needs to tell noise from a regression.
    """
    total = int(counts.sum())
    if total == 0:
        return None
    p = min(max(pct / 100.0, 0.0), 1.0)
    spread = z * (total * p * (1.0 - p)) ** 0.5
    low_rank = max(int(total * p - spread), 1)
    high_rank = min(int(total * p + spread) + 1, total)
    cumulative = np.cumsum(counts)
    table = bucket_table().highest_us
    low = table[int(np.searchsorted(cumulative, low_rank, side="left"))]
    high = table[int(np.searchsorted(cumulative, high_rank, side="left"))]
    return float(low) / 1000.0, float(high) / 1000.0


def max_ms(counts: IntArray) -> float | None:
    """The highest recorded value (bucket-equivalent), in milliseconds; None when empty."""
    nonzero = np.flatnonzero(counts)
    if nonzero.size == 0:
        return None
    return float(bucket_table().highest_us[nonzero[-1]]) / 1000.0


def percentile_curve(counts: IntArray) -> tuple[list[float], list[float]]:
    """(percentile, value ms) points at each non-empty bucket: the HDR percentile distribution plot's data.

    Plotted against 1/(1 - p) on a log axis, the tail (p99.9, p99.99) gets the room it deserves.
    """
    nonzero = np.flatnonzero(counts)
    if nonzero.size == 0:
        return [], []
    cumulative = np.cumsum(counts[nonzero])
    total = float(cumulative[-1])
    pct = (cumulative / total * 100.0).tolist()
    values = (bucket_table().highest_us[nonzero] / 1000.0).tolist()
    return pct, values
