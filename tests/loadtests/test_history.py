"""The history CSV: internals §5's header, one row per attempt, nothing lost in the buffer."""

from __future__ import annotations

import csv
from pathlib import Path

from loadtests.generator.history import HistoryWriter
from reports.runfolder import HISTORY_COLUMNS, Attempt


def attempt(n: int) -> Attempt:
    return Attempt(
        f"p{n}", f"k{n}", 1, "u000001", "u000001-c1", "ICBC", 1500, 1.5, 1.25, 2.0, 201, "", "succeeded",
        f"rp_{n}", "r1", "2026-11-11", n % 2 == 0, 0,
    )  # fmt: skip


def test_rows_follow_the_internals_header_and_survive_the_buffer(tmp_path: Path) -> None:
    path = tmp_path / "history" / "worker-0.csv"
    writer = HistoryWriter(path)
    for n in range(4500):
        writer.write(attempt(n))
    writer.close()
    writer.close()
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(HISTORY_COLUMNS)
    expected = "payment_id,key,attempt,user_id,card_id,channel,amount_fen,intended,sent,done,status,code,outcome,"
    expected += "repayment_id,replica,business_date,replayed,part"
    assert expected.split(",") == list(HISTORY_COLUMNS)
    assert len(rows) == 4500 == writer.written
    assert rows[0]["replayed"] == "true" and rows[1]["replayed"] == "false"
    assert rows[3]["intended"] == "1.500000" and rows[3]["status"] == "201" and rows[3]["amount_fen"] == "1500"
