"""The history CSV: internals §5's header, one row per attempt, nothing lost in the buffer."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from loadtests.generator.history import HistoryWriter
from runfolder.history import HISTORY_COLUMNS, Attempt, history_line


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
    expected += "repayment_id,replica,business_date,replayed,part,settlement,settle_code,final_at,polls,callbacks,"
    expected += "callback_refused,callback_dups,callback_status,flipped_to"
    assert expected.split(",") == list(HISTORY_COLUMNS)
    assert len(rows) == 4500 == writer.written
    assert rows[0]["replayed"] == "true" and rows[1]["replayed"] == "false"
    assert rows[3]["intended"] == "1.500000" and rows[3]["status"] == "201" and rows[3]["amount_fen"] == "1500"
    assert rows[3]["settlement"] == "" and rows[3]["final_at"] == "0.000000" and rows[3]["polls"] == "0"


def csv_line(a: Attempt) -> str:
    """The line csv.writer makes of the same cells (what history_line promises to equal)."""
    buffer = io.StringIO()
    cells = [
        a.payment_id, a.key, a.attempt, a.user_id, a.card_id, a.channel, a.amount_fen, f"{a.intended:.6f}",
        f"{a.sent:.6f}", f"{a.done:.6f}", a.status, a.code, a.outcome, a.repayment_id, a.replica, a.business_date,
        "true" if a.replayed else "false", a.part, a.settlement, a.settle_code, f"{a.final_at:.6f}", a.polls,
        a.callbacks, a.callback_refused, a.callback_dups, a.callback_status, a.flipped_to,
    ]  # fmt: skip
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()


@settings(max_examples=300, deadline=None)
@given(
    texts=st.lists(st.text(max_size=12), min_size=6, max_size=6),
    times=st.lists(st.floats(min_value=0, max_value=4e9, allow_nan=False), min_size=3, max_size=3),
    numbers=st.lists(st.integers(min_value=0, max_value=10**12), min_size=4, max_size=4),
)
def test_a_history_line_is_what_csv_writes_whatever_the_text(
    texts: list[str], times: list[float], numbers: list[int]
) -> None:
    code, replica, repayment_id, business_date, user_id, channel = texts
    a = Attempt(
        "p" * 32, "k" * 32, numbers[0], user_id, f"{user_id}-c1", channel, numbers[1], *times, numbers[2], code,
        "declined", repayment_id, replica, business_date, numbers[3] % 2 == 0, numbers[3] % 5, "failed", code,
        times[0], numbers[0] % 7, numbers[1] % 3, numbers[2] % 2, numbers[3] % 4, "failed", "succeeded",
    )  # fmt: skip
    line = history_line(a)
    cells = next(csv.reader(io.StringIO(line, newline="")))
    expected = [
        a.payment_id, a.key, str(a.attempt), a.user_id, a.card_id, a.channel, str(a.amount_fen), f"{a.intended:.6f}",
        f"{a.sent:.6f}", f"{a.done:.6f}", str(a.status), a.code, a.outcome, a.repayment_id, a.replica,
        a.business_date, "true" if a.replayed else "false", str(a.part), "failed", a.code, f"{a.final_at:.6f}",
        str(a.polls), str(a.callbacks), str(a.callback_refused), str(a.callback_dups), "failed", "succeeded",
    ]  # fmt: skip
    assert cells == expected, "every cell reads back as it was"
    assert line.endswith("\n")
    if not any(mark in text for text in texts for mark in ',"\r\n'):
        assert line == csv_line(a), "the fast line is the csv module's"
