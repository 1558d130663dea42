"""The durable ledger: SQLite in WAL mode, shared by every replica of a cluster (docs/internals.md §2).

Durability and atomicity
    Each write is one `BEGIN IMMEDIATE` transaction: it takes SQLite's write lock before reading, so the
    idempotency re-check, the daily-cap re-check on the authoritative totals and the insert are atomic across
    every process sharing the file (a replica that failed over, or active-active peers). A request is answered
    only after its transaction has committed.

    `synchronous=NORMAL` (the default; `ledger.synchronous = "full"` to change it): in WAL mode a commit is
    written to the WAL file before COMMIT returns, so it survives SIGKILL of the process (the OS holds the
    pages); only an OS crash or power loss can lose the last transactions before the next checkpoint's fsync.
    `full` fsyncs the WAL on every commit and survives power loss too, at one fsync per batch.

Group commit, on the event loop
    `record()` only queues; one callback per event-loop turn runs everything queued during that turn as one
    transaction, each request decided in arrival order against totals that include the earlier ones of the same
    batch. Reads for a batch are set-based (one query per table), so a request costs two row inserts and a share
    of one commit. The transaction runs on the loop thread itself: a commit without fsync takes ~0.1 ms, far
    less than handing work to a thread that must then wait for the GIL behind the busy loop at every SQLite call.

    The loop never waits for a lock: its connection has busy_timeout 0, and a batch that finds the write lock
    held by another process goes to the writer thread, which waits up to `busy_timeout_ms` for it. With
    `synchronous = "full"` every batch goes to the writer thread, so no fsync ever blocks the loop.

Checkpoints (copying the WAL into the database file, with its fsync) are taken every 0.25 s by the writer
thread, never by a commit on the loop: measured, automatic checkpoints doubled the cost of a commit.

Creation, exactly once
    A new ledger file is created, switched to WAL and given its schema by `prepare()`, under an exclusive
    `flock` on a sidecar lock file: the cluster calls it before any replica starts, and a lone replica calls
    it itself. Switching to WAL needs SQLite's exclusive lock, and some paths of that switch return "database is
    locked" without consulting the busy handler, so replicas racing to create one file failed a few percent of
    cluster starts. WAL mode is persistent in the file: a replica that opens a prepared ledger only reads
    `journal_mode` and never asks for an exclusive lock; a transient lock at start (another process's WAL
    recovery) is retried within `OPEN_RETRY_S`.

Reads: the idempotency lookup runs on the loop's write connection, whose page cache survives its own commits;
GET by id and the limits use a third connection on the loop thread (WAL readers never wait for writers). Those
connections never wait for a lock: a read that finds the file locked is retried in a thread (`_query`).

Claims (active-active): `claim()` marks a key as being processed by this process, in the same group commit as
everything else, so two replicas given one key at once do not both call the bank; `record()` drops the claim in
its own transaction. Readiness: after `UNREADY_AFTER_FAILED_COMMITS` failed commits in a row the ledger reports
itself not ready until a real-size write probe commits (`readiness()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import queue
import random
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple, TypeVar

import psutil

from mock_gateway.clock import SimClock, business_date
from mock_gateway.quotas import Usage
from mock_gateway.rules import Decide
from mock_gateway.validation import Charge

# An async payment is one `repayments` row like a sync one, with its settlement columns filled in (NULL on sync
# rows), plus an entry in one partial index over the open payments only (appended to: ids are time-ordered): a
# separate table cost two more B-trees per acceptance, measured ~20 µs a row (docs/perf/gateway-async.md).
SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS repayments (
  repayment_id    TEXT PRIMARY KEY,
  idempotency_key TEXT NOT NULL UNIQUE,
  user_id TEXT NOT NULL, card_id TEXT NOT NULL, channel TEXT NOT NULL,
  amount_fen INTEGER NOT NULL, business_date TEXT NOT NULL,
  replica TEXT NOT NULL, created_at TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'succeeded',
  accepted_unix REAL, notify_url TEXT, code TEXT, settled_at TEXT, settled_by TEXT,
  callback TEXT, owner TEXT, epoch INTEGER
);
CREATE TABLE IF NOT EXISTS idempotency (
  key TEXT PRIMARY KEY, request_hash TEXT NOT NULL, status INTEGER NOT NULL,
  body TEXT NOT NULL, repayment_id TEXT, created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
  key TEXT PRIMARY KEY, replica TEXT NOT NULL, pid INTEGER NOT NULL, claimed_unix REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS repayments_user_day ON repayments (user_id, business_date);
CREATE INDEX IF NOT EXISTS repayments_card_day ON repayments (card_id, business_date);
CREATE TABLE IF NOT EXISTS holders (
  owner TEXT PRIMARY KEY, replica TEXT NOT NULL, pid INTEGER NOT NULL, lease_until REAL NOT NULL,
  generation INTEGER NOT NULL
);
"""
OPEN_INDEX_SQL: Final = (
    "CREATE INDEX IF NOT EXISTS repayments_open ON repayments (owner) "
    "WHERE status = 'processing' OR callback = 'pending'"
)
# The async payments alone, for a reader who wants them (reports, a person with the sqlite3 shell).
SETTLEMENTS_VIEW_SQL: Final = (
    "CREATE VIEW IF NOT EXISTS settlements AS SELECT * FROM repayments WHERE owner IS NOT NULL"
)
TABLES: Final = frozenset({"repayments", "idempotency", "claims", "holders"})
# Columns a ledger made before asynchronous settlement lacks, added when a replica opens it (its rows are settled).
ADDED_COLUMNS: Final = (
    ("status", "TEXT NOT NULL DEFAULT 'succeeded'"),
    *((name, kind) for name, kind in (("accepted_unix", "REAL"), ("notify_url", "TEXT"), ("code", "TEXT"))),
    *((name, "TEXT") for name in ("settled_at", "settled_by", "callback", "owner")),
    ("epoch", "INTEGER"),
)
REPAYMENT_COLUMNS: Final = (
    "repayment_id, idempotency_key, user_id, card_id, channel, amount_fen, business_date, replica, created_at, status"
)
SETTLEMENT_COLUMNS: Final = (
    f"{REPAYMENT_COLUMNS}, accepted_unix, notify_url, code, settled_at, settled_by, callback, owner, epoch"
)
INSERT_REPAYMENT_SQL: Final = f"INSERT INTO repayments ({REPAYMENT_COLUMNS}) VALUES ({', '.join('?' * 10)})"  # noqa: S608
ACCEPT_SQL: Final = f"INSERT INTO repayments ({SETTLEMENT_COLUMNS}) VALUES ({', '.join('?' * 18)})"  # noqa: S608
MAX_BATCH: Final = 512
ACCEPTED: Final = 202  # the decision of an asynchronous channel: the payment is recorded, the bank settles later
CHECKPOINT_INTERVAL_S: Final = 0.25
# Each repayment lands at random places in five B-trees (two primary keys, the unique key, two day indexes), so
# a commit writes a page per tree per row; 1 KiB pages make that WAL traffic a quarter of the 4 KiB default's.
PAGE_SIZE: Final = 1024
OPEN_RETRY_S: Final = 10.0
CLAIM_LEASE_S: Final = 60.0
"""A claim older than this is stale whoever holds it: longer than any request can live (the router gives up
after 5 s, the bank wait is bounded), short enough that a key is never blocked for long by a lost claim."""
UNREADY_AFTER_FAILED_COMMITS: Final = 3
"""Consecutive failed commits (disk full, a file size limit, I/O errors) after which the replica stops being
ready, so the router takes it out; a successful commit or write probe makes it ready again."""
PROBE_BYTES: Final = 64 * 1024
_T = TypeVar("_T")


class LedgerError(Exception):
    """The ledger could not record (lock timeout, disk error); nothing of the request was committed."""


class Stored(NamedTuple):
    """The response stored against an idempotency key."""

    request_hash: str
    status: int
    body: str
    repayment_id: str | None = None


class Outcome(NamedTuple):
    """The ledger step's answer: the stored response, whether it was stored earlier, today's totals after it."""

    stored: Stored
    replayed: bool
    usage: Usage
    business_date: str


class Claim(NamedTuple):
    """The answer to `claim()`: the stored response to replay, or the replica already processing the key, or
    (both None) the key is now this replica's until its ledger step or `release()`."""

    stored: Stored | None
    held_by: str | None


CommitObserver = Callable[[int, float], None]
JobKind = Literal["record", "claim", "release"]


@dataclass(slots=True)
class _Job:
    charge: Charge
    future: asyncio.Future[Any]
    kind: JobKind = "record"


@dataclass(slots=True)
class _SettleJob:
    """A write of the settlement path: the final state (`status` succeeded/failed), or the end of a callback's
    deliveries (`callback` delivered/gave_up); applied only while `epoch` still holds the payment (fencing)."""

    repayment_id: str
    epoch: int
    future: asyncio.Future[Any]
    status: str = ""
    code: str | None = None
    callback: str = ""


_Work = _Job | _SettleJob


class Settlement(NamedTuple):
    """A pending payment this replica now holds: accepted here, or taken over from another replica."""

    repayment_id: str
    channel: str
    epoch: int
    accepted_unix: float
    processing: bool  # False: settled, its callback still to deliver
    document: dict[str, Any]  # what GET /v1/repayments/{id} answers (the callback is built from it)
    notify_url: str | None


OPEN: Final = "(status = 'processing' OR callback = 'pending')"
# The statements of the settlement path, built once from the constants above (no input is ever formatted in).
HELD_SQL: Final = f"SELECT repayment_id FROM repayments WHERE owner = ? AND {OPEN}"  # noqa: S608
TAKE_SQL: Final = (
    f"UPDATE repayments SET owner = ?, epoch = epoch + 1 WHERE owner = ? AND {OPEN} "  # noqa: S608
    f"RETURNING {SETTLEMENT_COLUMNS}"
)
SETTLE_SQL: Final = (
    "UPDATE repayments SET status = ?, code = ?, settled_at = ?, settled_by = ?, "  # noqa: S608
    "callback = CASE WHEN notify_url IS NULL THEN 'none' ELSE 'pending' END "
    "WHERE repayment_id = ? AND owner = ? AND epoch = ? AND status = 'processing' "
    f"RETURNING {SETTLEMENT_COLUMNS}"
)
READ_SQL: Final = f"SELECT {SETTLEMENT_COLUMNS} FROM repayments WHERE repayment_id = ?"  # noqa: S608


def settlement_document(row: dict[str, Any]) -> dict[str, Any]:
    """The public view of an async payment's row: GET /v1/repayments/{id}, and the same key's replay once final."""
    document = {
        "repayment_id": row["repayment_id"],
        "status": row["status"],
        "idempotency_key": row["idempotency_key"],
        "user_id": row["user_id"],
        "card_id": row["card_id"],
        "channel": row["channel"],
        "amount_fen": row["amount_fen"],
        "business_date": row["business_date"],
        "replica": row["replica"],
        "created_at": row["created_at"],
        "settled_at": row["settled_at"],
    }
    if row["code"] is not None:
        document["code"] = row["code"]
    if row["settled_by"] is not None:
        document["settled_by"] = row["settled_by"]
    return document


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


def connect(path: Path, *, synchronous: Literal["normal", "full"], busy_timeout_ms: int) -> sqlite3.Connection:
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


class _LockBusy(Exception):
    """Another process holds the write lock; the batch is retried where waiting does not block the loop."""


class Ledger:
    """Open with `await open()`, record with `await record(charge)`, read with the plain methods."""

    def __init__(
        self,
        path: Path,
        *,
        replica: str,
        clock: SimClock,
        decide: Decide,
        synchronous: Literal["normal", "full"] = "normal",
        busy_timeout_ms: int = 5000,
        on_commit: CommitObserver | None = None,
        claiming: bool = False,
    ) -> None:
        """`claiming`: keys are claimed in the ledger before the bank call (`claim()`), for replicas that take
        traffic side by side (active-active); the ledger step then also drops the claim."""
        self.path = path
        self._replica = replica
        self._clock = clock
        self._decide = decide
        self._synchronous: Literal["normal", "full"] = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._on_commit = on_commit
        self._pending: list[_Work] = []
        self._queue: queue.SimpleQueue[list[_Work] | None] = queue.SimpleQueue()  # None: stop
        self._writer: threading.Thread | None = None
        self._inline: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._claiming = claiming
        # The holder of this process's settlement lease: name, pid and a nonce, so a restarted replica of the
        # same name (or a reused pid) is another holder and takes its predecessor's payments over like any other.
        self.owner = f"{replica}/{os.getpid()}/{secrets.token_hex(4)}"
        self._generation = 0  # of this holder's row: raised by a replica that took payments from this one
        self._upkeep: sqlite3.Connection | None = None  # settlement upkeep's, used by one thread at a time
        self._failed_commits = 0  # in a row; written by the loop and the writer thread, one int store each

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(prepare, self.path, timeout_s=OPEN_RETRY_S)
        waiting = self._connect(self._busy_timeout_ms)
        self._reader = self._connect(self._busy_timeout_ms)
        self._reader.execute("PRAGMA busy_timeout = 0")  # reads on the loop never wait (see _query)
        if self._synchronous == "normal":
            # Opened with the waiting timeout (start-up may race other replicas), then told never to wait.
            self._inline = self._connect(self._busy_timeout_ms)
            self._inline.execute("PRAGMA busy_timeout = 0")
        self._writer = threading.Thread(target=self._write_loop, args=(waiting,), name="ledger-writer", daemon=True)
        self._writer.start()

    async def close(self) -> None:
        """Commit whatever is queued, then close; called after the server stopped taking requests."""
        if self._pending:
            self._flush()
        if self._writer is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        for conn in (self._inline, self._reader, self._upkeep):
            if conn is not None:
                conn.close()
        self._inline = self._reader = self._upkeep = None

    @property
    def claiming(self) -> bool:
        """Whether requests claim their key in the ledger before the bank call (see `claim`)."""
        return self._claiming

    async def record(self, charge: Charge) -> Outcome:
        """The atomic ledger step; raises `LedgerError` when nothing could be committed. It also drops the key's
        claim, in the same transaction."""
        outcome: Outcome = await self._submit(charge, "record")
        return outcome

    async def claim(self, charge: Charge) -> Claim:
        """Claim the key across every replica sharing the ledger before the bank is called (active-active).

        In one transaction with the writes of other replicas: a stored response for the key is returned to be
        replayed; a live claim of another replica is returned as `held_by` (409 IDEMPOTENCY_IN_FLIGHT); else the
        key is claimed for this process. A claim is live while its process runs (same host: the ledger is a
        local SQLite file) and for at most `CLAIM_LEASE_S`, so a killed replica's claims free their keys at once.
        A claim of this very process is stale by definition: the caller checked its own in-flight set first.
        """
        claim: Claim = await self._submit(charge, "claim")
        return claim

    async def release(self, charge: Charge) -> None:
        """Drop this process's claim on the key when the request ends without a ledger step."""
        await self._submit(charge, "release")

    async def _submit(self, charge: Charge, kind: JobKind) -> Any:
        if self._loop is None or self._writer is None:
            raise LedgerError("ledger is not open")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._enqueue(_Job(charge, future, kind))
        return await future

    def _enqueue(self, job: _Work) -> None:
        assert self._loop is not None
        self._pending.append(job)
        if len(self._pending) == 1:
            self._loop.call_soon(self._flush)

    # --- settlement (asynchronous channels) ---------------------------------------------------------

    async def settle(self, repayment_id: str, epoch: int, status: str, code: str | None) -> dict[str, Any] | None:
        """The payment's final write, in the group commit: status, the release of a refused payment's
        reservation, and the key's stored answer, all only if `epoch` still holds the payment. Returns the
        settled row (None: another replica took the payment over meanwhile — fenced, nothing written)."""
        if self._loop is None or self._writer is None:
            raise LedgerError("ledger is not open")
        future: asyncio.Future[dict[str, Any] | None] = self._loop.create_future()
        self._enqueue(_SettleJob(repayment_id, epoch, future, status=status, code=code))
        return await future

    async def callback_done(self, repayment_id: str, epoch: int, callback: str) -> bool:
        """Mark the payment's callback `delivered` or `gave_up`, if `epoch` still holds it."""
        if self._loop is None or self._writer is None:
            raise LedgerError("ledger is not open")
        future: asyncio.Future[bool] = self._loop.create_future()
        self._enqueue(_SettleJob(repayment_id, epoch, future, callback=callback))
        return await future

    async def maintain(self, lease_s: float) -> tuple[set[str] | None, list[Settlement]]:
        """Renew this process's lease and take over the open payments of every holder whose process is gone or
        whose lease ran out. Returns (None, taken) normally; (the ids this process still holds, taken) when
        another replica took payments from it meanwhile (it was paused past its lease). In a thread: it may
        wait for the write lock. One row per holder is written, however large the backlog."""
        return await asyncio.to_thread(self._maintain, lease_s)

    def _maintain(self, lease_s: float) -> tuple[set[str] | None, list[Settlement]]:
        try:
            if self._upkeep is None:  # kept open: one upkeep a second need not pay for a new connection
                self._upkeep = connect(self.path, synchronous=self._synchronous, busy_timeout_ms=self._busy_timeout_ms)
                self._upkeep.row_factory = sqlite3.Row
        except sqlite3.Error as exc:
            raise LedgerError(f"settlement lease upkeep failed: {exc}") from exc
        conn = self._upkeep
        try:
            conn.execute("BEGIN IMMEDIATE")
            now = time.time()
            row = conn.execute(
                "UPDATE holders SET lease_until = ? WHERE owner = ? RETURNING generation", (now + lease_s, self.owner)
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO holders VALUES (?, ?, ?, ?, 0)",
                    (self.owner, self._replica, os.getpid(), now + lease_s),
                )
            held: set[str] | None = None
            generation = 0 if row is None else int(row[0])
            if generation != self._generation:  # another replica took payments from this one
                held = {r[0] for r in conn.execute(HELD_SQL, (self.owner,))}
                self._generation = generation
            taken: list[Settlement] = []
            others = conn.execute("SELECT owner, pid, lease_until FROM holders WHERE owner != ?", (self.owner,))
            for owner, pid, lease_until in others.fetchall():
                gone = not _process_alive(pid)
                if not gone and lease_until > now:
                    continue
                rows = conn.execute(TAKE_SQL, (self.owner, owner)).fetchall()
                taken += [_settlement(dict(r)) for r in rows]
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

    async def lookup(self, key: str) -> Stored | None:
        """On the loop's write connection when there is one: every commit is its own, so its page cache stays
        warm, where the read connection's is dropped at each commit (measured 12 µs a lookup there)."""
        sql = "SELECT request_hash, status, body, repayment_id FROM idempotency WHERE key = ?"
        rows = await self._query(sql, (key,), self._inline)
        return None if not rows else Stored(*rows[0])

    async def repayment(self, repayment_id: str) -> dict[str, Any] | None:
        rows = await self._query(READ_SQL, (repayment_id,), None, named=True)
        return rows[0] if rows else None

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

    async def _query(
        self,
        sql: str,
        params: Sequence[object],
        conn: sqlite3.Connection | None = None,
        *,
        named: bool = False,
    ) -> list[Any]:
        """Rows of one read. The loop's connections never wait (busy_timeout 0): a read that finds the file
        locked (another process's WAL recovery, an exclusive lock) is retried in a thread on a connection that
        waits up to `busy_timeout_ms`, so the event loop is never blocked. Raises `LedgerError` (a 503)."""
        if self._reader is None:
            raise LedgerError("ledger is not open")
        try:
            return _fetch(conn or self._reader, sql, params, named)
        except sqlite3.Error:
            pass
        return await asyncio.to_thread(self._query_waiting, sql, params, named)

    def _query_waiting(self, sql: str, params: Sequence[object], named: bool) -> list[Any]:
        try:
            conn = connect(self.path, synchronous=self._synchronous, busy_timeout_ms=self._busy_timeout_ms)
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger read failed: {exc}") from exc
        try:
            return _fetch(conn, sql, params, named)
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger read failed: {exc}") from exc
        finally:
            conn.close()

    # --- readiness ----------------------------------------------------------------------------------

    async def readiness(self) -> str:
        """Empty when the ledger can take writes; else why not (for /readyz).

        After `UNREADY_AFTER_FAILED_COMMITS` failed commits in a row the replica is not ready; each readiness
        check then tries one small real commit (a heartbeat row, in a thread), and its success makes the replica
        ready again: without it, a replica taken out of traffic would never commit again to prove it can.
        """
        if self._writer is None or not self._writer.is_alive() or self._reader is None:
            return "the ledger is not open"
        if self._failed_commits >= UNREADY_AFTER_FAILED_COMMITS:
            problem = await asyncio.to_thread(self._probe_write)
            if problem:
                return f"the last {self._failed_commits} ledger commits failed ({problem})"
            self._failed_commits = 0
        try:
            _fetch(self._reader, "SELECT 1 FROM idempotency LIMIT 1", (), False)
        except sqlite3.Error as exc:
            return f"the ledger is not readable: {exc}"
        return ""

    def _probe_write(self) -> str:
        """One commit at least as large as a busy batch's (`PROBE_BYTES`): a tiny one can fit in the space a
        failed transaction left in the WAL and would call a full disk healthy."""
        try:
            conn = connect(self.path, synchronous=self._synchronous, busy_timeout_ms=self._busy_timeout_ms)
        except sqlite3.Error as exc:
            return str(exc)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS heartbeat (replica TEXT PRIMARY KEY, at TEXT NOT NULL, pad BLOB NOT NULL)"
            )
            conn.execute(
                "INSERT OR REPLACE INTO heartbeat VALUES (?, ?, zeroblob(?))",
                (self._replica, self._clock.now().isoformat(), PROBE_BYTES),
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            return str(exc)
        finally:
            conn.close()
        return ""

    # --- writes -----------------------------------------------------------------------------------

    def _connect(self, busy_timeout_ms: int) -> sqlite3.Connection:
        return _retrying(
            lambda: connect(self.path, synchronous=self._synchronous, busy_timeout_ms=busy_timeout_ms),
            self.path,
            OPEN_RETRY_S,
        )

    def _flush(self) -> None:
        """One event-loop turn's worth of requests: commit here, or hand over to the writer thread."""
        batch, self._pending = self._pending, []
        if not batch:
            return
        if self._inline is None:
            self._queue.put(batch)
            return
        try:
            outcomes = self._run_batch(self._inline, batch, wait=False)
        except _LockBusy:
            self._queue.put(batch)
            return
        _resolve([job.future for job in batch], outcomes)

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        last_checkpoint = time.monotonic()
        try:
            while True:
                if time.monotonic() - last_checkpoint >= CHECKPOINT_INTERVAL_S:
                    _checkpoint(conn)
                    last_checkpoint = time.monotonic()
                try:
                    item = self._queue.get(timeout=CHECKPOINT_INTERVAL_S)
                except queue.Empty:
                    continue
                stopping = item is None
                batch: list[_Work] = [] if item is None else list(item)
                while len(batch) < MAX_BATCH:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stopping = True
                    else:
                        batch.extend(more)
                if batch:
                    outcomes = self._run_batch(conn, batch, wait=True)
                    assert self._loop is not None
                    self._loop.call_soon_threadsafe(_resolve, [job.future for job in batch], outcomes)
                if stopping and self._queue.empty():
                    _checkpoint(conn)
                    return
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Work], *, wait: bool) -> Sequence[Any]:
        """Outcomes in batch order; every failure fails the whole batch with nothing committed."""
        started = time.perf_counter()
        try:
            outcomes: Sequence[Any] = self._transaction(conn, batch, wait)
        except _LockBusy:
            raise
        except Exception as exc:  # a bad batch must fail its requests, never the writer or the loop
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            outcomes = [LedgerError(f"ledger write failed, nothing committed: {exc}")] * len(batch)
            self._failed_commits += 1
        else:
            self._failed_commits = 0
        if self._on_commit is not None:
            self._on_commit(len(batch), time.perf_counter() - started)
        return outcomes

    def _transaction(self, conn: sqlite3.Connection, batch: list[_Work], wait: bool) -> list[Any]:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not wait and exc.sqlite_errorcode == sqlite3.SQLITE_BUSY:
                raise _LockBusy from exc
            raise
        moment = self._clock.now()
        day = business_date(moment).isoformat()
        created_at = moment.isoformat()
        jobs = [job for job in batch if isinstance(job, _Job)]
        charges = [job.charge for job in jobs if job.kind == "record"]
        stored = _stored_for(conn, {job.charge.key for job in jobs if job.kind != "release"})
        users = _totals(conn, "user_id", {c.user_id for c in charges}, day)
        cards = _totals(conn, "card_id", {c.card_id for c in charges}, day)
        claims = self._claims(conn, jobs, stored)
        repayments: list[tuple[object, ...]] = []
        records: list[tuple[object, ...]] = []
        accepted: list[tuple[object, ...]] = []
        unclaim: list[tuple[object, ...]] = []
        outcomes: list[Any] = []
        for job in batch:
            if isinstance(job, _SettleJob):
                outcomes.append(self._settle_step(conn, job, created_at))
                continue
            charge = job.charge
            if job.kind != "record":
                outcomes.append(claims.get(job.charge.key) if job.kind == "claim" else None)
                continue
            unclaim.append((charge.key,))
            usage = Usage(cards.get(charge.card_id, 0), users.get(charge.user_id, 0))
            earlier = stored.get(charge.key)
            if earlier is not None:
                outcomes.append(Outcome(earlier, replayed=True, usage=usage, business_date=day))
                continue
            decision = self._decide(charge, usage, moment)
            if decision.repayment_id is not None:
                cards[charge.card_id] = usage.card_fen + charge.amount_fen
                users[charge.user_id] = usage.user_fen + charge.amount_fen
                row = (
                    decision.repayment_id,
                    charge.key,
                    charge.user_id,
                    charge.card_id,
                    charge.channel,
                    charge.amount_fen,
                    day,
                    self._replica,
                    created_at,
                )
                if decision.status == ACCEPTED:  # processing, held by this process at epoch 1
                    accepted.append(
                        (*row, "processing", time.time(), charge.notify_url, None, None, None, "none", self.owner, 1)
                    )
                else:
                    repayments.append((*row, "succeeded"))
            record = Stored(charge.request_hash, decision.status, decision.body, decision.repayment_id)
            records.append(
                (charge.key, record.request_hash, record.status, record.body, decision.repayment_id, created_at)
            )
            stored[charge.key] = record
            after = Usage(cards.get(charge.card_id, 0), users.get(charge.user_id, 0))
            outcomes.append(Outcome(record, replayed=False, usage=after, business_date=day))
        conn.executemany(INSERT_REPAYMENT_SQL, repayments)
        conn.executemany("INSERT INTO idempotency VALUES (?, ?, ?, ?, ?, ?)", records)
        if accepted:
            conn.executemany(ACCEPT_SQL, accepted)
        if self._claiming:
            conn.executemany("DELETE FROM claims WHERE key = ?", unclaim)
        conn.execute("COMMIT")
        return outcomes

    def _settle_step(self, conn: sqlite3.Connection, job: _SettleJob, moment: str) -> object:
        """One fenced write of the settlement path (see `settle` and `callback_done`)."""
        if job.callback:
            cursor = conn.execute(
                "UPDATE repayments SET callback = ? WHERE repayment_id = ? AND owner = ? AND epoch = ?",
                (job.callback, job.repayment_id, self.owner, job.epoch),
            )
            return cursor.rowcount == 1
        row = conn.execute(
            SETTLE_SQL,
            (job.status, job.code, moment, self._replica, job.repayment_id, self.owner, job.epoch),
        ).fetchone()
        if row is None:
            return None
        settled = dict(zip(SETTLEMENT_COLUMNS.split(", "), row, strict=True))
        conn.execute(
            "UPDATE idempotency SET status = 200, body = ? WHERE key = ?",
            (json.dumps(settlement_document(settled)), settled["idempotency_key"]),
        )
        return settled

    def _claims(self, conn: sqlite3.Connection, batch: list[_Job], stored: dict[str, Stored]) -> dict[str, Claim]:
        """Decide the batch's claims and releases (their writes join the batch's transaction)."""
        claiming = [job.charge for job in batch if job.kind == "claim"]
        releasing = [(job.charge.key, os.getpid()) for job in batch if job.kind == "release"]
        if releasing:
            conn.executemany("DELETE FROM claims WHERE key = ? AND pid = ?", releasing)
        if not claiming:
            return {}
        keys = {charge.key for charge in claiming}
        held = {
            key: (replica, pid, claimed)
            for key, replica, pid, claimed in _in_query(
                conn, "SELECT key, replica, pid, claimed_unix FROM claims WHERE key IN ({})", keys, ()
            )
        }
        now = time.time()
        answers: dict[str, Claim] = {}
        taken: list[tuple[object, ...]] = []
        for charge in claiming:
            if charge.key in stored:
                answers[charge.key] = Claim(stored[charge.key], None)
                continue
            holder = held.get(charge.key)
            if holder is not None and _claim_is_live(holder[1], holder[2], now):
                answers[charge.key] = Claim(None, str(holder[0]))
                continue
            answers[charge.key] = Claim(None, None)
            taken.append((charge.key, self._replica, os.getpid(), now))
        conn.executemany("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?)", taken)
        return answers


def _settlement(row: dict[str, Any]) -> Settlement:
    return Settlement(
        repayment_id=row["repayment_id"],
        channel=row["channel"],
        epoch=row["epoch"],
        accepted_unix=row["accepted_unix"],
        processing=row["status"] == "processing",
        document=settlement_document(row),
        notify_url=row["notify_url"],
    )


def _process_alive(pid: int) -> bool:
    """Whether a lease holder's process still runs (a zombie does not; a stopped one does, until its lease
    ends); this process itself is never another holder."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _claim_is_live(pid: int, claimed_unix: float, now: float) -> bool:
    """Another process's claim holds while that process runs (a zombie, killed but not yet reaped, does not),
    within the lease; this process's own claim never does."""
    if pid == os.getpid() or now - claimed_unix > CLAIM_LEASE_S:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _checkpoint(conn: sqlite3.Connection) -> None:
    """Copy committed WAL frames into the database file so the WAL can restart. PASSIVE never waits for a
    lock or blocks a writer; a failure only means the WAL grows until the next try."""
    with contextlib.suppress(sqlite3.Error):
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _stored_for(conn: sqlite3.Connection, keys: set[str]) -> dict[str, Stored]:
    sql = "SELECT key, request_hash, status, body, repayment_id FROM idempotency WHERE key IN ({})"
    return {row[0]: Stored(*row[1:]) for row in _in_query(conn, sql, keys, ())}


def _totals(conn: sqlite3.Connection, column: str, ids: set[str], day: str) -> dict[str, int]:
    sql = (
        f"SELECT {column}, SUM(amount_fen) FROM repayments "  # noqa: S608  # column is one of two literals
        f"WHERE business_date = ? AND status != 'failed' AND {column} IN ({{}}) GROUP BY {column}"
    )
    return dict(_in_query(conn, sql, ids, (day,)))


def _in_query(conn: sqlite3.Connection, sql: str, ids: Iterable[str], head: tuple[object, ...]) -> list[Any]:
    values = list(ids)
    placeholders = ", ".join("?" * len(values))
    return conn.execute(sql.format(placeholders), (*head, *values)).fetchall()


def _fetch(conn: sqlite3.Connection, sql: str, params: Sequence[object], named: bool) -> list[Any]:
    cursor = conn.execute(sql, params)
    rows = cursor.fetchall()
    if not named:
        return rows
    columns = [column[0] for column in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _resolve(futures: list[asyncio.Future[Any]], outcomes: Sequence[Any]) -> None:
    for future, outcome in zip(futures, outcomes, strict=True):
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
