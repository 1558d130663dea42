"""Settlement leases: which process holds which open async payment, and the takeover of a lost holder's.

Each process that accepts async payments is a holder row with a lease it renews (`Leases.maintain`, about once a
second, in a thread: it may wait for the write lock). A holder whose process is gone, or whose lease ran out,
loses its open payments to the renewing process, each with its epoch raised so the old holder's late writes are
fenced off. Only one row per holder is written, however large the backlog.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

import psutil

from mock_gateway.errors import LedgerError
from mock_gateway.replica.ledger.schema import HELD_SQL, TAKE_SQL, Settlement
from mock_gateway.replica.ledger.storage import Synchronous, connect


def process_alive(pid: int) -> bool:
    """Whether a holder's process still runs (a zombie does not; a stopped one does, until its lease ends)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


class Leases:
    """This process's holder row and the takeovers it makes; used by one thread at a time."""

    def __init__(self, path: Path, *, owner: str, replica: str, synchronous: Synchronous, busy_timeout_ms: int):
        self._path = path
        self._owner = owner
        self._replica = replica
        self._synchronous: Synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._generation = 0  # of this holder's row: raised by a replica that took payments from this one
        self._conn: sqlite3.Connection | None = None

    def maintain(self, lease_s: float) -> tuple[set[str] | None, list[Settlement]]:
        """Renew the lease and take over the payments of lost holders. Returns (None, taken) normally; (the ids
        this process still holds, taken) when another replica took payments from it meanwhile."""
        try:
            if self._conn is None:  # kept open: one upkeep a second need not pay for a new connection
                self._conn = connect(self._path, synchronous=self._synchronous, busy_timeout_ms=self._busy_timeout_ms)
                self._conn.row_factory = sqlite3.Row
        except sqlite3.Error as exc:
            raise LedgerError(f"settlement lease upkeep failed: {exc}") from exc
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            now = time.time()
            row = conn.execute(
                "UPDATE holders SET lease_until = ? WHERE owner = ? RETURNING generation", (now + lease_s, self._owner)
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO holders VALUES (?, ?, ?, ?, 0)",
                    (self._owner, self._replica, os.getpid(), now + lease_s),
                )
            held: set[str] | None = None
            generation = 0 if row is None else int(row[0])
            if generation != self._generation:  # another replica took payments from this one
                held = {r[0] for r in conn.execute(HELD_SQL, (self._owner,))}
                self._generation = generation
            taken: list[Settlement] = []
            others = conn.execute("SELECT owner, pid, lease_until FROM holders WHERE owner != ?", (self._owner,))
            for owner, pid, lease_until in others.fetchall():
                gone = not process_alive(pid)
                if not gone and lease_until > now:
                    continue
                rows = conn.execute(TAKE_SQL, (self._owner, owner)).fetchall()
                taken += [Settlement.from_row(dict(r)) for r in rows]
                if gone:  # a process never comes back: its row goes with its payments
                    conn.execute("DELETE FROM holders WHERE owner = ?", (owner,))
                elif rows:  # paused: tell it, when it resumes, that what it held has moved
                    conn.execute("UPDATE holders SET generation = generation + 1 WHERE owner = ?", (owner,))
            conn.execute("COMMIT")
            return held, taken
        except sqlite3.Error as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise LedgerError(f"settlement lease upkeep failed: {exc}") from exc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
