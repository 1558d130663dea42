"""report.html names each money-invariant violation (key, card, amount, what the client saw, what the ledger
holds), the first 100 with a count of the rest; `surge verify` prints every key whole, even into a pipe."""

from __future__ import annotations

import csv
import re
import sqlite3
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

from reports.finalize import finalize_run
from tests.reports.runs import edit_meta, ledger_execute


class ViolationRows(HTMLParser):
    """The cells of each row of the `violations` table."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._inside = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._inside = ("id", "violations") in attrs
        elif self._inside and tag == "tr" and any(name == "data-invariant" for name, _ in attrs):
            self.rows.append([])
        elif self._inside and tag == "td" and self.rows:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._inside = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def violation_rows(run_dir: Path) -> tuple[list[list[str]], str]:
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    parser = ViolationRows()
    parser.feed(page)
    return parser.rows, page


def acknowledged(run_dir: Path, count: int) -> list[tuple[str, str, str, int, str]]:
    """`count` acknowledged repayments of the fixture: key, repayment id, card, amount, business day."""
    with sqlite3.connect(run_dir / "ledger.sqlite") as conn:
        return list(
            conn.execute(
                "SELECT idempotency_key, repayment_id, card_id, amount_fen, business_date FROM repayments "
                "ORDER BY repayment_id LIMIT ?",
                (count,),
            )
        )


def test_the_report_names_a_lost_payment_and_a_phantom_with_what_the_client_saw_and_the_ledger_holds(
    run_dir: Path,
) -> None:
    (key, repayment_id, card, amount, _), *_ = acknowledged(run_dir, 1)
    ledger_execute(run_dir, "DELETE FROM repayments WHERE idempotency_key = ?", key)
    ledger_execute(
        run_dir,
        "INSERT INTO repayments VALUES ('rp_ghost', 'k-never-sent', 'u9', 'c-ghost', 'ICBC', 12345, '2026-11-11', "
        "'r1', 'now')",
    )
    finalize_run(run_dir)
    rows, page = violation_rows(run_dir)
    assert [row[0] for row in rows] == ["lost", "phantom"], rows
    lost, phantom = rows
    assert lost[1:4] == [key, card, f"¥{amount // 100:,}.{amount % 100:02d}"]
    assert f"201 {repayment_id}" in lost[4] and lost[5] == "no row for this key"
    assert phantom[1:4] == ["k-never-sent", "c-ghost", "¥123.45"]
    assert phantom[4] == "never attempted" and phantom[5] == "1 row: rp_ghost ¥123.45 on 2026-11-11"
    assert 'id="violations-more"' not in page


def test_the_report_lists_the_first_100_violations_and_counts_the_rest(run_dir: Path) -> None:
    ledger_execute(
        run_dir, "DELETE FROM repayments WHERE repayment_id IN (SELECT repayment_id FROM repayments LIMIT 107)"
    )
    finalize_run(run_dir)
    rows, page = violation_rows(run_dir)
    assert len(rows) == 100 and {row[0] for row in rows} == {"lost"}
    more = re.search(r'id="violations-more">(.*?)</p>', page, re.S)
    assert more is not None and "7 more violations" in more.group(1)


LONG_PREFIX = "s0a1b2c3d4e5f60718293a4b5c6d7e8f9-"  # as long as a real run's keys (prefix + uuid)


def long_keys(run_dir: Path) -> None:
    """Give the fixture's keys a run prefix as long as real keys, in the history, the ledger and meta.json."""
    for path in (run_dir / "history").glob("*.csv"):
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({**row, "key": LONG_PREFIX + row["key"]} for row in rows)
    ledger_execute(run_dir, "UPDATE repayments SET idempotency_key = ? || idempotency_key", LONG_PREFIX)
    edit_meta(run_dir, key_prefix=LONG_PREFIX)


def test_surge_verify_into_a_pipe_prints_every_key_whole(run_dir: Path) -> None:
    """A non-TTY console is 80 columns: the examples in a table cell were folded and cut mid-key."""
    long_keys(run_dir)
    lost = acknowledged(run_dir, 8)
    ledger_execute(
        run_dir, "DELETE FROM repayments WHERE repayment_id IN (SELECT repayment_id FROM repayments LIMIT 8)"
    )
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.cli.main", "verify", str(run_dir)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    for key, repayment_id, _, _, _ in lost:
        assert any(key in line and repayment_id in line for line in lines), (key, result.stdout)
