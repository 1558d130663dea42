"""Reads of the ledger on the event loop that never wait for a lock.

GET by id and the limits use a read connection on the loop thread (WAL readers never wait for writers); the
idempotency lookup runs on the loop's write connection, whose page cache survives its own commits. Those
connections have busy_timeout 0: a read that finds the file locked (another process's WAL recovery, an
exclusive lock) is retried in a thread on a connection that waits up to `busy_timeout_ms`.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mock_gateway.errors import LedgerError
from mock_gateway.replica.ledger.schema import READ_SQL, WAITING_COUNT_SQL, WAITING_SQL, Stored
from mock_gateway.replica.ledger.storage import Synchronous, connect, connect_at_start


class Reads:
    """The read side of one ledger: `open()` on start, then the queries; `close()` at the end."""

    def __init__(self, path: Path, *, synchronous: Synchronous, busy_timeout_ms: int) -> None:
        self._path = path
        self._synchronous: Synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._reader: sqlite3.Connection | None = None

    def open(self) -> None:
        self._reader = connect_at_start(
            self._path, synchronous=self._synchronous, busy_timeout_ms=self._busy_timeout_ms
        )
        self._reader.execute("PRAGMA busy_timeout = 0")  # reads on the loop never wait (see _query)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    async def lookup(self, key: str, warm: sqlite3.Connection | None) -> Stored | None:
        """On `warm`, the loop's write connection, when there is one: every commit is its own, so its page cache
        stays warm, where the read connection's is dropped at each commit (measured 12 µs a lookup there)."""
        sql = "SELECT request_hash, status, body, repayment_id FROM idempotency WHERE key = ?"
        rows = await self._query(sql, (key,), warm)
        return None if not rows else Stored(*rows[0])

    async def repayment(self, repayment_id: str) -> dict[str, Any] | None:
        rows = await self._query(READ_SQL, (repayment_id,), None, named=True)
        return rows[0] if rows else None

    async def waiting(
        self, owner: str, channel: str, after_rowid: int, limit: int
    ) -> list[tuple[int, str, int, float]]:
        """The next `limit` payments `owner` holds on `channel` that wait for the bank, after `after_rowid`, as
        (rowid, repayment_id, epoch, accepted_unix) in arrival order."""
        return await self._query(WAITING_SQL, (owner, channel, after_rowid, limit))

    async def waiting_count(self, owner: str, channel: str) -> int:
        rows = await self._query(WAITING_COUNT_SQL, (owner, channel))
        return int(rows[0][0])

    async def user_day(self, user_id: str, day: str) -> tuple[int, list[tuple[str, str, int]]]:
        """The user's total on `day` and, for every card the user ever repaid, (card, channel, card total)."""
        rows = await self._query(
            "SELECT COALESCE(SUM(amount_fen), 0) FROM repayments "
            "WHERE user_id = ? AND business_date = ? AND status != 'failed'",
            (user_id, day),
        )
        cards = await self._query(
            "SELECT r.card_id, r.channel, (SELECT COALESCE(SUM(amount_fen), 0) FROM repayments "
            "WHERE card_id = r.card_id AND business_date = ? AND status != 'failed') "
            "FROM (SELECT DISTINCT card_id, channel FROM repayments WHERE user_id = ?) AS r "
            "ORDER BY r.card_id, r.channel",
            (day, user_id),
        )
        return rows[0][0], [(card_id, channel, total) for card_id, channel, total in cards]

    def unreadable(self) -> str:
        """Empty when the ledger answers a read now, else why not (for readiness)."""
        if self._reader is None:
            return "the ledger is not open"
        try:
            _fetch(self._reader, "SELECT 1 FROM idempotency LIMIT 1", (), False)
        except sqlite3.Error as exc:
            return f"the ledger is not readable: {exc}"
        return ""

    async def _query(
        self,
        sql: str,
        params: Sequence[object],
        conn: sqlite3.Connection | None = None,
        *,
        named: bool = False,
    ) -> list[Any]:
        """Rows of one read, on `conn` or the read connection, retried in a thread if the file is locked.
        Raises `LedgerError` (a 503)."""
        if self._reader is None:
            raise LedgerError("ledger is not open")
        try:
            return _fetch(conn or self._reader, sql, params, named)
        except sqlite3.Error:
            pass
        return await asyncio.to_thread(self._query_waiting, sql, params, named)

    def _query_waiting(self, sql: str, params: Sequence[object], named: bool) -> list[Any]:
        try:
            conn = connect(self._path, synchronous=self._synchronous, busy_timeout_ms=self._busy_timeout_ms)
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger read failed: {exc}") from exc
        try:
            return _fetch(conn, sql, params, named)
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger read failed: {exc}") from exc
        finally:
            conn.close()


def _fetch(conn: sqlite3.Connection, sql: str, params: Sequence[object], named: bool) -> list[Any]:
    cursor = conn.execute(sql, params)
    rows = cursor.fetchall()
    if not named:
        return rows
    columns = [column[0] for column in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in rows]
