"""The ledger file: created exactly once, opened in WAL mode, checkpointed and probed off the request path.

A new file is created, switched to WAL and given its schema by `prepare()`, under an exclusive `flock` on a
sidecar lock file: the cluster calls it before any replica starts, and a lone replica calls it itself. Switching
to WAL needs SQLite's exclusive lock, and some paths of that switch return "database is locked" without
consulting the busy handler, so replicas racing to create one file failed a few percent of cluster starts. WAL
mode is persistent in the file: a replica that opens a prepared ledger only reads `journal_mode` and never asks
for an exclusive lock; a transient lock at start (another process's WAL recovery) is retried within
`OPEN_RETRY_S`.

`synchronous=NORMAL` (the default): in WAL mode a commit is written to the WAL file before COMMIT returns, so it
survives SIGKILL of the process (the OS holds the pages); only an OS crash or power loss can lose the last
transactions before the next checkpoint's fsync. `full` fsyncs the WAL on every commit and survives power loss.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final, Literal, TypeVar

from mock_gateway.errors import LedgerError
from mock_gateway.replica.ledger.schema import ADDED_COLUMNS, OPEN_INDEX_SQL, SCHEMA, SETTLEMENTS_VIEW_SQL, TABLES

Synchronous = Literal["normal", "full"]
# Each repayment lands at random places in five B-trees (two primary keys, the unique key, two day indexes), so
# a commit writes a page per tree per row; 1 KiB pages make that WAL traffic a quarter of the 4 KiB default's.
PAGE_SIZE: Final = 1024
OPEN_RETRY_S: Final = 10.0
PROBE_BYTES: Final = 64 * 1024
_T = TypeVar("_T")


def prepare(path: Path, *, timeout_s: float = OPEN_RETRY_S) -> None:
    """Create the ledger file, switch it to WAL and give it its schema, once, whoever gets there first.

    Idempotent and safe to call from any number of processes at once: they queue on an exclusive `flock` of
    `<ledger>.lock`, and the first one does the work that needs SQLite's exclusive lock while nobody else has
    the file open. Raises `LedgerError` with one line when the folder, the lock or the file cannot be made.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LedgerError(f"cannot create the folder of ledger {path}: {exc.strerror or exc}") from exc
    try:
        fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise LedgerError(f"cannot create ledger {path}: {exc.strerror or exc}") from exc
    try:
        _lock_exclusively(fd, path, timeout_s)
        _retrying(lambda: _create_once(path), path, timeout_s)
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _lock_exclusively(fd: int, path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise LedgerError(f"cannot open ledger {path}: another process holds its creation lock") from None
            time.sleep(0.005)


def _create_once(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None, timeout=1.0)
    try:
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # only takes effect on a new, empty file
            conn.execute("PRAGMA journal_mode = WAL")
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if not names >= TABLES:
            conn.execute("BEGIN IMMEDIATE")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("COMMIT")
        columns = {row[1] for row in conn.execute("PRAGMA table_info(repayments)")}
        missing = [(name, kind) for name, kind in ADDED_COLUMNS if name not in columns]
        if missing or "repayments_open" not in names:  # new, or made before asynchronous settlement
            conn.execute("BEGIN IMMEDIATE")
            for name, kind in missing:  # an older ledger's rows are all settled money
                conn.execute(f"ALTER TABLE repayments ADD COLUMN {name} {kind}")
            conn.execute(OPEN_INDEX_SQL)
            conn.execute(SETTLEMENTS_VIEW_SQL)
            conn.execute("COMMIT")
    finally:
        conn.close()


def _retrying(attempt: Callable[[], _T], path: Path, timeout_s: float) -> _T:
    """Retry SQLite's transient "locked"/"busy" at start within `timeout_s`; anything else is a LedgerError."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return attempt()
        except sqlite3.OperationalError as exc:
            transient = "locked" in str(exc) or "busy" in str(exc)
            if not transient or time.monotonic() > deadline:
                raise LedgerError(f"cannot open ledger {path}: {exc}") from exc
            time.sleep(random.uniform(0.005, 0.05))  # jitter: racing openers do not retry in step
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open ledger {path}: {exc}") from exc


def connect(path: Path, *, synchronous: Synchronous, busy_timeout_ms: int) -> sqlite3.Connection:
    """A connection to a prepared (WAL) ledger in autocommit mode (transactions are explicit).

    It never changes the journal mode, so it never needs SQLite's exclusive lock; a file that is not in WAL
    mode was not prepared and is refused rather than silently switched.
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal":
            raise sqlite3.DatabaseError(f"the ledger is in {mode} mode, not WAL (not created by prepare())")
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # the writer thread checkpoints, off the request path
    except BaseException:
        conn.close()
        raise
    return conn


def connect_at_start(path: Path, *, synchronous: Synchronous, busy_timeout_ms: int) -> sqlite3.Connection:
    """`connect`, retrying a transient lock within `OPEN_RETRY_S` (start-up may race other replicas)."""
    return _retrying(
        lambda: connect(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms), path, OPEN_RETRY_S
    )


def checkpoint(conn: sqlite3.Connection) -> None:
    """Copy committed WAL frames into the database file so the WAL can restart. PASSIVE never waits for a
    lock or blocks a writer; a failure only means the WAL grows until the next try."""
    with contextlib.suppress(sqlite3.Error):
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def probe_write(path: Path, *, synchronous: Synchronous, busy_timeout_ms: int, replica: str, at: str) -> str:
    """One commit at least as large as a busy batch's (`PROBE_BYTES`), empty when it committed, else why not:
    a tiny one can fit in the space a failed transaction left in the WAL and would call a full disk healthy."""
    try:
        conn = connect(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS heartbeat (replica TEXT PRIMARY KEY, at TEXT NOT NULL, pad BLOB NOT NULL)"
        )
        conn.execute("INSERT OR REPLACE INTO heartbeat VALUES (?, ?, zeroblob(?))", (replica, at, PROBE_BYTES))
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        conn.close()
    return ""
