"""Reading a run folder: the ledger's fast path and its fallback agree; windows add up; bad input is named."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hdrh.histogram import HdrHistogram

from reports import frames
from runfolder.layout import RunFolderError

SCHEMA = (
    "CREATE TABLE repayments (repayment_id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, user_id TEXT "
    "NOT NULL, card_id TEXT NOT NULL, channel TEXT NOT NULL, amount_fen INTEGER NOT NULL, business_date TEXT NOT "
    "NULL, replica TEXT NOT NULL, created_at TEXT NOT NULL)"
)


def write_ledger(path: Path, rows: list[tuple[object, ...]]) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(SCHEMA)
        conn.executemany("INSERT INTO repayments VALUES (?, ?, ?, ?, ?, ?, ?, 'r1', 'now')", rows)
    conn.close()


@pytest.mark.parametrize("awkward", ["plain", "line\nbreak", 'quote"d,comma', "tab\tand\x1fseparator", ""])
def test_the_ledger_reads_the_same_whatever_its_values_hold(tmp_path: Path, awkward: str) -> None:
    rows = [("rp1", "k1", "u1", awkward, "ICBC", 100, "2026-11-11"), ("rp2", "k2", "u2", "c2", "CMB", 7, "2026-11-12")]
    write_ledger(tmp_path / "ledger.sqlite", rows)
    ledger = frames.read_ledger(tmp_path / "ledger.sqlite")
    assert ledger is not None
    assert [tuple(row) for row in ledger.itertuples(index=False)] == rows
    assert ledger["amount_fen"].dtype == "int64"


def test_an_empty_ledger_and_no_ledger_are_different(tmp_path: Path) -> None:
    write_ledger(tmp_path / "ledger.sqlite", [])
    empty = frames.read_ledger(tmp_path / "ledger.sqlite")
    assert empty is not None and empty.empty and list(empty.columns) == frames.LEDGER_COLUMNS
    assert frames.read_ledger(tmp_path / "absent.sqlite") is None


def test_a_ledger_without_the_table_is_a_one_line_error(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "ledger.sqlite").close()
    with pytest.raises(RunFolderError, match="unreadable ledger"):
        frames.read_ledger(tmp_path / "ledger.sqlite")


def _hist(*values: int, lowest: int = 1, highest: int = 3_600_000_000) -> str:
    hist = HdrHistogram(lowest, highest, 3)
    for value in values:
        hist.record_value(value)
    return str(hist.encode().decode("ascii"))


def test_windows_of_one_second_add_up_and_gaps_are_zero(tmp_path: Path) -> None:
    lines = [
        {"t": 0, "offered": 2, "classes": {"succeeded": {"count": 2, "intended": _hist(1000, 2000)}}},
        {"t": 0, "offered": 1, "classes": {"succeeded": {"count": 1, "intended": _hist(3000)}}, "codes": {"X": 1}},
        {"t": 2, "offered": 4, "replicas": {"r2": 4}},
    ]
    path = tmp_path / "windows.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    windows, codes, replicas, latency = frames.read_windows(path)
    assert windows["offered"].tolist() == [3, 0, 4]
    assert windows["n_succeeded"].tolist() == [3, 0, 0]
    assert codes["X"].tolist() == [1, 0, 0] and replicas["r2"].tolist() == [0, 0, 4]
    assert int(latency.loc[latency["t"] == 0, "count"].sum()) == 3


def test_a_histogram_of_another_shape_is_refused(tmp_path: Path) -> None:
    line = {"t": 0, "classes": {"succeeded": {"count": 1, "intended": _hist(5, highest=60_000_000)}}}
    (tmp_path / "windows.jsonl").write_text(json.dumps(line) + "\n", encoding="utf-8")
    with pytest.raises(RunFolderError, match=r"windows.jsonl:1: bad succeeded/intended histogram"):
        frames.read_windows(tmp_path / "windows.jsonl")


def test_missing_optional_files_give_empty_frames(tmp_path: Path) -> None:
    assert frames.read_history(tmp_path / "history").empty
    assert frames.read_events(tmp_path / "events.csv").empty
    assert isinstance(frames.read_steps(tmp_path / "steps.csv"), pd.DataFrame)


def test_the_fast_ledger_path_is_taken_for_ordinary_values_only(tmp_path: Path) -> None:
    write_ledger(tmp_path / "plain.sqlite", [("rp1", "k1", "u1", "c1", "ICBC", 100, "2026-11-11")])
    write_ledger(tmp_path / "odd.sqlite", [("rp1", "k1", "u1", "c\n1", "ICBC", 100, "2026-11-11")])
    for name, fast in (("plain.sqlite", True), ("odd.sqlite", False)):
        with sqlite3.connect(tmp_path / name) as conn:
            assert (frames._ledger_by_column(conn) is not None) is fast, name
        conn.close()


ENDLESS_VIEW = (
    "CREATE VIEW repayments AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
    "SELECT 'rp' || i AS repayment_id, 'k' || i AS idempotency_key, 'u' AS user_id, 'c' AS card_id, "
    "'ICBC' AS channel, 1 AS amount_fen, '2026-11-11' AS business_date, 'r1' AS replica, '' AS created_at FROM n"
)


def test_surge_verify_refuses_a_ledger_whose_repayments_is_a_view(run_dir: Path) -> None:
    """A 4 KB run folder from elsewhere whose `repayments` is an endless recursive view hung `surge verify`."""
    (run_dir / "ledger.sqlite").unlink()
    with sqlite3.connect(run_dir / "ledger.sqlite") as conn:
        conn.execute(ENDLESS_VIEW)
    conn.close()
    done = subprocess.run(
        [sys.executable, "-m", "loadtests.cli.main", "verify", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "repayments is a view, not a plain table" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_ledger_read_is_bounded_in_time(tmp_path: Path) -> None:
    rows = [(f"rp{i}", f"k{i}", "u", "c", "ICBC", 1, "2026-11-11") for i in range(20_000)]
    write_ledger(tmp_path / "ledger.sqlite", rows)
    with pytest.raises(RunFolderError, match="reading the ledger took longer than 0 s"):
        frames.read_ledger(tmp_path / "ledger.sqlite", limit_s=0)
