"""A target's ledger in MySQL, against a real MariaDB (tests/support/mariadb.py): the team's own columns and types
mapped by the profile's query, copied as integer fen and ISO days; the read-only transaction; the masked password."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.errors import HarnessError
from loadtests.orchestration.target_ledger import copy_target_ledger
from loadtests.scenario.profile_ledger import LedgerSpec
from reports.frames import read_ledger
from tests.support.mariadb import DATABASE, USER, MariaDB, start

# the MySQL example of docs/targets.md §4, as written there: yuan, a UTC timestamp, a status
DOCS_QUERY = """
SELECT request_no AS `key`, card_no AS card_id, user_no AS user_id,
       CAST(ROUND(amount_yuan * 100) AS SIGNED) AS amount_fen,
       DATE(CONVERT_TZ(created_at, '+00:00', '+08:00')) AS business_date
FROM repay_order
WHERE status = 'SUCCESS'
"""


@pytest.fixture(scope="module")
def mariadb() -> Iterator[MariaDB]:
    """One server for the file; not under pytest's tmp_path, to keep the socket path short."""
    base = Path(tempfile.mkdtemp(prefix="surge-mariadb-"))
    try:
        yield from start(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _url(mariadb: MariaDB) -> str:
    return f"mysql://{USER}:${{LEDGER_PASSWORD}}@127.0.0.1:{mariadb.port}/{DATABASE}"


def _copied(run_dir: Path) -> list[tuple[object, ...]]:
    ledger = read_ledger(run_dir / "ledger.sqlite")
    assert ledger is not None
    columns = ["repayment_id", "idempotency_key", "user_id", "card_id", "channel", "amount_fen", "business_date"]
    return sorted(ledger[columns].itertuples(index=False, name=None))


def _stored_types(run_dir: Path) -> set[tuple[str, str]]:
    with contextlib.closing(sqlite3.connect(run_dir / "ledger.sqlite")) as conn:
        return set(conn.execute("SELECT typeof(amount_fen), typeof(business_date) FROM repayments").fetchall())


def test_yuan_and_utc_timestamps_are_copied_as_fen_and_business_days(mariadb: MariaDB, tmp_path: Path) -> None:
    with mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE repay_order (id BIGINT AUTO_INCREMENT PRIMARY KEY, request_no VARCHAR(64) NOT NULL, "
            "card_no VARCHAR(32) NOT NULL, user_no VARCHAR(32) NOT NULL, amount_yuan DECIMAL(12, 2) NOT NULL, "
            "created_at DATETIME NOT NULL, status VARCHAR(16) NOT NULL)"
        )
        cur.executemany(
            "INSERT INTO repay_order (request_no, card_no, user_no, amount_yuan, created_at, status) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            [
                ("r1-k1", "c1", "u1", "123.45", "2026-11-10 17:30:00", "SUCCESS"),  # 01:30 on the 11th in +08:00
                ("r1-k1", "c1", "u1", "123.45", "2026-11-10 17:31:00", "SUCCESS"),  # the same key recorded twice
                ("r1-k2", "c2", "u2", "19.99", "2026-11-11 15:59:59", "SUCCESS"),  # 23:59:59 on the 11th
                ("r1-k3", "c2", "u2", "50.00", "2026-11-11 03:00:00", "FAILED"),  # not a payment: left out
            ],
        )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    spec = LedgerSpec(url=_url(mariadb), query=DOCS_QUERY)
    assert copy_target_ledger(spec, {"LEDGER_PASSWORD": mariadb.password}, run_dir) == 3
    assert _copied(run_dir) == [
        ("row-1", "r1-k1", "u1", "c1", "", 12345, "2026-11-11"),
        ("row-2", "r1-k1", "u1", "c1", "", 12345, "2026-11-11"),
        ("row-3", "r1-k2", "u2", "c2", "", 1999, "2026-11-11"),
    ]
    assert _stored_types(run_dir) == {("integer", "text")}


def test_bigint_fen_a_date_and_numeric_ids_keep_payment_id_and_channel(mariadb: MariaDB, tmp_path: Path) -> None:
    with mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE pay_flow (flow_no VARCHAR(40) PRIMARY KEY, idem_key VARCHAR(64) NOT NULL, "
            "card_ref VARCHAR(32) NOT NULL, uid BIGINT NOT NULL, fen BIGINT NOT NULL, biz_day DATE NOT NULL, "
            "bank VARCHAR(16) NOT NULL)"
        )
        cur.executemany(
            "INSERT INTO pay_flow VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                ("F001", "r2-k1", "c9", 10001, 3_000_000_001, "2026-02-28", "ICBC"),  # beyond 32 bits
                ("F002", "r2-k2", "c9", 10001, 1, "2026-03-01", "CMB"),
            ],
        )
    query = (
        "SELECT flow_no AS payment_id, idem_key AS `key`, card_ref AS card_id, uid AS user_id, fen AS amount_fen, "
        "biz_day AS business_date, bank AS channel FROM pay_flow"
    )
    spec = LedgerSpec(url=_url(mariadb), query=query)
    assert copy_target_ledger(spec, {"LEDGER_PASSWORD": mariadb.password}, tmp_path) == 2
    assert _copied(tmp_path) == [
        ("F001", "r2-k1", "10001", "c9", "ICBC", 3_000_000_001, "2026-02-28"),
        ("F002", "r2-k2", "10001", "c9", "CMB", 1, "2026-03-01"),
    ]
    assert _stored_types(tmp_path) == {("integer", "text")}


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO scratch VALUES ('k2', 1) RETURNING",
        "DELETE FROM scratch RETURNING",
    ],
)
def test_the_query_runs_read_only(mariadb: MariaDB, tmp_path: Path, statement: str) -> None:
    # MyISAM keeps what is written without a commit: a write the copy let through would stay in the table
    with mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS scratch (k VARCHAR(8), fen INT) ENGINE=MyISAM")
        cur.execute("DELETE FROM scratch")
        cur.execute("INSERT INTO scratch VALUES ('k1', 1)")
    columns = "k AS `key`, 'c' AS card_id, 'u' AS user_id, fen AS amount_fen, DATE '2026-11-11' AS business_date"
    spec = LedgerSpec(url=mariadb.dsn, query=f"{statement} {columns}")
    with pytest.raises(HarnessError, match="Cannot execute statement in a READ ONLY transaction"):
        copy_target_ledger(spec, {}, tmp_path)
    assert not (tmp_path / "ledger.sqlite").exists()
    with mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT k, fen FROM scratch")
        assert cur.fetchall() == (("k1", 1),)


@pytest.mark.parametrize(
    ("password", "query", "reason"),
    [
        ("not-The-pw-42", "SELECT 1", "Access denied for user 'surge'"),
        (None, "SELECT * FROM no_such_table", "Table 'pay.no_such_table' doesn't exist"),
    ],
)
def test_a_failing_mysql_query_is_one_line_without_the_password(
    mariadb: MariaDB, tmp_path: Path, password: str | None, query: str, reason: str
) -> None:
    used = password or mariadb.password
    spec = LedgerSpec(url=_url(mariadb), query=query)
    with pytest.raises(HarnessError) as caught:
        copy_target_ledger(spec, {"LEDGER_PASSWORD": used}, tmp_path)
    message = str(caught.value)
    assert message.startswith(f"the ledger query on mysql+pymysql://{USER}:***@127.0.0.1:{mariadb.port}/pay failed")
    assert reason in message
    assert used not in message
    assert mariadb.password not in message
    assert "\n" not in message


def test_a_slow_query_is_stopped_at_its_timeout(mariadb: MariaDB, tmp_path: Path) -> None:
    """Nothing bounded the query: MariaDB's max_statement_time (MySQL's max_execution_time) does now."""
    columns = "'k' AS `key`, 'c' AS card_id, 'u' AS user_id, 1 AS amount_fen, DATE '2026-11-11' AS business_date"
    query = f"SELECT {columns} FROM (SELECT SLEEP(25) AS s) AS slow"  # noqa: S608 - the test's own SQL
    spec = LedgerSpec(url=_url(mariadb), query=query, timeout_s=1)
    started = time.monotonic()
    with pytest.raises(HarnessError, match=r"ran longer than 1 s \(\[ledger\] timeout_s\)") as caught:
        copy_target_ledger(spec, {"LEDGER_PASSWORD": mariadb.password}, tmp_path)
    assert time.monotonic() - started < 8, "the server's limit, not the socket's backstop"
    assert mariadb.password not in str(caught.value)
