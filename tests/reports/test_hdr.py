"""The numpy HDR math against the hdrhistogram library it replaces for speed."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from reports import hdr
from reports.frames import KINDS
from reports.measure import latency
from runfolder.outcomes import OUTCOME_CLASSES

latencies_us = st.lists(st.integers(min_value=1, max_value=120_000_000), min_size=1, max_size=300)


def _histogram(values: list[int]) -> str:
    hist = hdr.new_histogram()
    for value in values:
        hist.record_value(value)
    return str(hist.encode().decode("ascii"))


@settings(max_examples=40, deadline=None)
@given(latencies_us, st.sampled_from([0.0, 50.0, 90.0, 99.0, 99.9, 100.0]))
def test_percentiles_match_the_library(values: list[int], pct: float) -> None:
    encoded = _histogram(values)
    idx, counts = hdr.decode_sparse(encoded)
    ours = hdr.percentiles_ms(hdr.dense(idx, counts), [pct])[0]
    theirs = hdr.new_histogram()
    theirs.decode_and_add(encoded)
    expected = (
        theirs.get_value_at_percentile(pct) if pct > 0 else theirs.get_highest_equivalent_value(theirs.get_min_value())
    )
    assert ours == expected / 1000.0


@settings(max_examples=25, deadline=None)
@given(latencies_us)
def test_max_and_curve(values: list[int]) -> None:
    idx, counts = hdr.decode_sparse(_histogram(values))
    dense = hdr.dense(idx, counts)
    library = hdr.new_histogram()
    for value in values:
        library.record_value(value)
    assert hdr.max_ms(dense) == library.get_highest_equivalent_value(max(values)) / 1000.0
    pct, ms = hdr.percentile_curve(dense)
    assert pct[-1] == 100.0 and ms == sorted(ms) and len(ms) == idx.size


def test_empty_histogram_has_no_percentiles() -> None:
    empty = hdr.dense(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
    assert hdr.percentiles_ms(empty, [50.0, 99.0]) == [None, None]
    assert hdr.max_ms(empty) is None
    assert hdr.percentile_interval_ms(empty, 99.0) is None


def test_percentile_interval_brackets_the_percentile_and_narrows_with_samples() -> None:
    rng = np.random.default_rng(7)
    widths = []
    for size in (200, 20_000):
        values = rng.lognormal(np.log(30_000), 0.6, size).astype(int).tolist()
        dense = hdr.dense(*hdr.decode_sparse(_histogram(values)))
        low, high = hdr.percentile_interval_ms(dense, 99.0) or (0.0, 0.0)
        p99 = hdr.percentiles_ms(dense, [99.0])[0] or 0.0
        assert low <= p99 <= high
        widths.append((high - low) / p99)
    assert widths[1] < widths[0] / 3


def _latency_rows(per_second: dict[int, list[int]]) -> pd.DataFrame:
    frames = []
    for t, values in per_second.items():
        idx, counts = hdr.decode_sparse(_histogram(values))
        frames.append(pd.DataFrame({"t": t, "kind": "intended", "cls": "succeeded", "idx": idx, "count": counts}))
    rows = pd.concat(frames, ignore_index=True)
    rows["kind"] = pd.Categorical(rows["kind"], categories=KINDS)
    rows["cls"] = pd.Categorical(rows["cls"], categories=OUTCOME_CLASSES)
    return rows


def test_per_second_percentiles_equal_one_histogram_per_second() -> None:
    rng = np.random.default_rng(3)
    per_second = {t: rng.integers(1_000, 900_000, size=int(rng.integers(1, 80))).tolist() for t in (0, 1, 3)}
    result = latency.latency_per_second(_latency_rows(per_second), pd.RangeIndex(0, 4, name="t"))
    for t, values in per_second.items():
        dense = hdr.dense(*hdr.decode_sparse(_histogram(values)))
        assert result.loc[t, "p50_ms"] == hdr.percentiles_ms(dense, [50.0])[0]
        assert result.loc[t, "p99_ms"] == hdr.percentiles_ms(dense, [99.0])[0]
        assert result.loc[t, "max_ms"] == hdr.max_ms(dense)
    assert result.loc[2].isna().all()


def test_installed_hdrhistogram_is_the_pinned_minor_version() -> None:
    """reports/hdr.py reads the codec's internals (payload header, `init_counts`, the raw counts buffer), which
    hdrhistogram does not promise to keep; the pin in pyproject.toml names the minor version they were read from.
    A new minor version must be checked (the next test) and the pin moved on purpose, not by an upgrade."""
    import tomllib
    from importlib.metadata import version
    from pathlib import Path

    from packaging.requirements import Requirement

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    pins = [Requirement(dep) for dep in pyproject["project"]["dependencies"] if dep.startswith("hdrhistogram")]
    assert len(pins) == 1 and pins[0].specifier, "hdrhistogram must be pinned to one minor version"
    installed = version("hdrhistogram")
    assert pins[0].specifier.contains(installed), f"hdrhistogram {installed} is outside the pin {pins[0].specifier}"
    assert not pins[0].specifier.contains("0.11.0"), "the pin must stop at the next minor version"


def test_codec_level_decode_matches_the_library_bucket_by_bucket() -> None:
    """decode_sparse reads the codec's buffers directly: every (bucket index, count) it reports must be the
    library's own, including the highest trackable value and a value far below the first sub-bucket."""
    values = [1, 2, 999, 1_000, 1_001, 65_536, 3_000_000, 3_600_000_000]
    hist = hdr.new_histogram()
    for value in values:
        hist.record_value(value, 3)
    idx, counts = hdr.decode_sparse(hist.encode())
    library = {i: hist.get_count_at_index(i) for i in range(hist.counts_len) if hist.get_count_at_index(i)}
    assert dict(zip(idx.tolist(), counts.tolist(), strict=True)) == library
    assert sum(library.values()) == 3 * len(values)
    assert hdr.bucket_table().size == hist.counts_len
