"""Many processes opening one fresh ledger at the same instant, as the replicas of a starting cluster do.

Switching a file to WAL needs SQLite's exclusive lock: replicas racing to create the file and switch it would
kill a few percent of cluster starts with "database is locked". `prepare()` creates the file once under a
`flock`, and an open never changes the journal mode.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from mock_gateway.clock import SimClock
from mock_gateway.config_sources import load_config
from mock_gateway.errors import LedgerError
from mock_gateway.replica.ledger import Ledger
from mock_gateway.replica.ledger.storage import connect, prepare
from mock_gateway.rules import make_decider
from mock_gateway.validation import Charge

PROCESSES = 8
ROUNDS = 50


def _open_record_close(path: str, barrier: Barrier, index: int) -> None:
    """One replica's start: wait for the others, open the ledger, record one repayment, close."""

    async def main() -> None:
        name = f"r{index}"
        ledger = Ledger(
            Path(path), replica=name, clock=SimClock(), decide=make_decider(load_config(None, env={}), name)
        )
        await ledger.open()
        try:
            outcome = await ledger.record(Charge(f"key-{index}", "hash", f"u{index}", f"c{index}", "ICBC", 100))
            assert outcome.stored.status == 201, outcome
        finally:
            await ledger.close()

    barrier.wait(timeout=30)
    try:
        asyncio.run(main())
    except LedgerError as exc:
        raise SystemExit(f"ledger open failed: {exc}") from exc


def test_eight_processes_open_one_fresh_ledger_at_once_fifty_times(tmp_path: Path) -> None:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    failures: list[str] = []
    for round_ in range(ROUNDS):
        path = tmp_path / f"round-{round_}" / "surge-ledger.sqlite"
        barrier = context.Barrier(PROCESSES)
        workers = [context.Process(target=_open_record_close, args=(str(path), barrier, i)) for i in range(PROCESSES)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
            if worker.exitcode != 0:
                failures.append(f"round {round_}: {worker.name} exited {worker.exitcode}")
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("SELECT count(*) FROM repayments").fetchone()[0] == PROCESSES
    assert failures == []


def test_prepare_is_idempotent_and_keeps_rows(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    prepare(path)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO repayments (repayment_id, idempotency_key, user_id, card_id, channel, amount_fen,"
            " business_date, replica, created_at)"
            " VALUES ('p1', 'k1', 'u1', 'c1', 'ICBC', 100, '2026-11-11', 'r1', 'now')"
        )
    prepare(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM repayments").fetchone()[0] == 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_connect_refuses_a_file_that_was_not_prepared(tmp_path: Path) -> None:
    path = tmp_path / "plain.sqlite"
    sqlite3.connect(path).close()
    with pytest.raises(sqlite3.DatabaseError, match="not WAL"):
        connect(path, synchronous="normal", busy_timeout_ms=100)


def test_open_waits_out_a_creation_lock_held_briefly(tmp_path: Path) -> None:
    """A replica that meets the creation lock held by another process waits for it instead of dying."""
    import fcntl
    import os
    import threading

    path = tmp_path / "ledger.sqlite"
    fd = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    threading.Timer(0.3, os.close, args=(fd,)).start()
    prepare(path, timeout_s=5)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
