"""Group commit: the requests of one event-loop turn become one transaction, on the loop or on the writer thread.

`submit()` only queues; one callback per loop turn runs everything queued during that turn as one `Transaction`.
It runs on the loop thread itself: a commit without fsync takes ~0.1 ms, far less than handing work to a thread
that must then wait for the GIL behind the busy loop at every SQLite call. The loop never waits for a lock: its
connection has busy_timeout 0, and a batch that finds the write lock held by another process goes to the writer
thread, which waits up to `busy_timeout_ms` for it. With `synchronous = "full"` every batch goes to the writer
thread, so no fsync ever blocks the loop.

Checkpoints (copying the WAL into the database file, with its fsync) are taken every 0.25 s by the writer
thread, never by a commit on the loop: measured, automatic checkpoints doubled the cost of a commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from mock_gateway.errors import LedgerError
from mock_gateway.replica.ledger.batch import LockBusy, Transaction, Work
from mock_gateway.replica.ledger.storage import Synchronous, checkpoint, connect_at_start

MAX_BATCH: Final = 512
CHECKPOINT_INTERVAL_S: Final = 0.25
CommitObserver = Callable[[int, float], None]


class GroupCommit:
    """The write path of one ledger: `start()` on the loop, `submit()` jobs, `close()` to commit what is left."""

    def __init__(
        self,
        path: Path,
        transaction: Transaction,
        *,
        synchronous: Synchronous,
        busy_timeout_ms: int,
        on_commit: CommitObserver | None,
    ) -> None:
        self._path = path
        self._transaction = transaction
        self._synchronous: Synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._on_commit = on_commit
        self._pending: list[Work] = []
        self._queue: queue.SimpleQueue[list[Work] | None] = queue.SimpleQueue()  # None: stop
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.inline: sqlite3.Connection | None = None
        """The loop's own write connection (never waits for a lock); None with `synchronous = "full"`."""
        self.failed_commits = 0  # in a row; written by the loop and the writer thread, one int store each

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        waiting = self._connect()
        if self._synchronous == "normal":
            # Opened with the waiting timeout (start-up may race other replicas), then told never to wait.
            self.inline = self._connect()
            self.inline.execute("PRAGMA busy_timeout = 0")
        self._thread = threading.Thread(target=self._write_loop, args=(waiting,), name="ledger-writer", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def close(self) -> None:
        """Commit whatever is queued, then close; called after the server stopped taking requests."""
        if self._pending:
            self._flush()
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        if self.inline is not None:
            self.inline.close()
            self.inline = None

    def future(self) -> asyncio.Future[Any]:
        """A future for a job's outcome; raises `LedgerError` before `start()` or after `close()`."""
        if self._loop is None or self._thread is None:
            raise LedgerError("ledger is not open")
        return self._loop.create_future()

    def submit(self, job: Work) -> asyncio.Future[Any]:
        """Queue `job` for this loop turn's batch; its future gets the outcome (or the `LedgerError`)."""
        assert self._loop is not None
        self._pending.append(job)
        if len(self._pending) == 1:
            self._loop.call_soon(self._flush)
        return job.future

    def _connect(self) -> sqlite3.Connection:
        return connect_at_start(self._path, synchronous=self._synchronous, busy_timeout_ms=self._busy_timeout_ms)

    def _flush(self) -> None:
        """One event-loop turn's worth of requests: commit here, or hand over to the writer thread."""
        batch, self._pending = self._pending, []
        if not batch:
            return
        if self.inline is None:
            self._queue.put(batch)
            return
        try:
            outcomes = self._run_batch(self.inline, batch, wait=False)
        except LockBusy:
            self._queue.put(batch)
            return
        _resolve([job.future for job in batch], outcomes)

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        last_checkpoint = time.monotonic()
        try:
            while True:
                if time.monotonic() - last_checkpoint >= CHECKPOINT_INTERVAL_S:
                    checkpoint(conn)
                    last_checkpoint = time.monotonic()
                try:
                    item = self._queue.get(timeout=CHECKPOINT_INTERVAL_S)
                except queue.Empty:
                    continue
                stopping = item is None
                batch: list[Work] = [] if item is None else list(item)
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
                    checkpoint(conn)
                    return
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[Work], *, wait: bool) -> Sequence[Any]:
        """Outcomes in batch order; every failure fails the whole batch with nothing committed."""
        started = time.perf_counter()
        try:
            outcomes: Sequence[Any] = self._transaction.run(conn, batch, wait=wait)
        except LockBusy:
            raise
        except Exception as exc:  # a bad batch must fail its requests, never the writer or the loop
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            outcomes = [LedgerError(f"ledger write failed, nothing committed: {exc}")] * len(batch)
            self.failed_commits += 1
        else:
            self.failed_commits = 0
        if self._on_commit is not None:
            self._on_commit(len(batch), time.perf_counter() - started)
        return outcomes


def _resolve(futures: list[asyncio.Future[Any]], outcomes: Sequence[Any]) -> None:
    for future, outcome in zip(futures, outcomes, strict=True):
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
