"""The ledger on its own: group commit, the cross-process write lock, and the schema others read."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Literal

import pytest

from mock_gateway.clock import SimClock
from mock_gateway.config_sources import load_config
from mock_gateway.errors import LedgerError
from mock_gateway.replica.ledger import Ledger
from mock_gateway.replica.ledger import writer as writer_module
from mock_gateway.replica.ledger.storage import prepare
from mock_gateway.rules import make_decider
from mock_gateway.validation import Charge


def charge(i: int, amount: int = 100) -> Charge:
    return Charge(f"key-{i}", f"hash-{i}", f"u{i % 3}", "c1", "ICBC", amount)


def make_ledger(
    path: Path, synchronous: Literal["normal", "full"] = "normal", busy_ms: int = 5000, batches: list[int] | None = None
) -> Ledger:
    config = load_config(None, env={})
    sizes = batches if batches is not None else []
    return Ledger(
        path,
        replica="r9",
        clock=SimClock(),
        decide=make_decider(config, "r9"),
        synchronous=synchronous,
        busy_timeout_ms=busy_ms,
        on_commit=lambda size, _seconds: sizes.append(size),
    )


def hold_write_lock(path: Path, release: threading.Event) -> threading.Thread:
    """Another 'process' (connection) holding SQLite's write lock until the test sets `release` (not for a fixed
    time: on a loaded machine a timed hold could end before the code under test even met the lock)."""
    started = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        started.set()
        release.wait(60)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert started.wait(30)
    return thread


@pytest.mark.parametrize("synchronous", ["normal", "full"])
async def test_concurrent_records_share_one_commit(tmp_path: Path, synchronous: Literal["normal", "full"]) -> None:
    batches: list[int] = []
    ledger = make_ledger(tmp_path / "l.sqlite", synchronous, batches=batches)
    await ledger.open()
    try:
        outcomes = await asyncio.gather(*(ledger.record(charge(i)) for i in range(50)))
    finally:
        await ledger.close()
    assert [o.stored.status for o in outcomes] == [201] * 50
    assert sum(batches) == 50
    assert len(batches) < 50
    with sqlite3.connect(tmp_path / "l.sqlite") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        columns = [row[1] for row in conn.execute("PRAGMA table_info(repayments)")]
        assert columns == [
            "repayment_id", "idempotency_key", "user_id", "card_id", "channel",
            "amount_fen", "business_date", "replica", "created_at", "status", "accepted_unix", "notify_url",
            "code", "settled_at", "settled_by", "callback", "owner", "epoch",
        ]  # fmt: skip
        assert conn.execute("SELECT COUNT(*), MIN(replica) FROM repayments").fetchone() == (50, "r9")


async def test_a_lock_held_elsewhere_is_waited_for_off_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    ledger = make_ledger(path)
    await ledger.open()
    release = threading.Event()
    try:
        holder = await asyncio.to_thread(hold_write_lock, path, release)
        pending = asyncio.ensure_future(ledger.record(charge(1)))
        # The loop stays free (20 turns of it) while the writer thread waits for the lock.
        for _ in range(20):
            await asyncio.sleep(0.01)
        waited = not pending.done()
        release.set()
        outcome = await pending
        await asyncio.to_thread(holder.join)
    finally:
        release.set()
        await ledger.close()
    assert waited
    assert outcome.stored.status == 201


async def test_lock_timeout_fails_the_request_and_records_nothing(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    ledger = make_ledger(path, busy_ms=100)
    await ledger.open()
    release = threading.Event()
    try:
        holder = await asyncio.to_thread(hold_write_lock, path, release)
        with pytest.raises(LedgerError, match="nothing committed"):
            await ledger.record(charge(2))
        release.set()
        await asyncio.to_thread(holder.join)
        assert await ledger.lookup("key-2") is None
        assert (await ledger.record(charge(2))).stored.status == 201
    finally:
        release.set()
        await ledger.close()


async def test_a_key_committed_by_another_replica_is_replayed(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    first, second = make_ledger(path), make_ledger(path)
    await first.open()
    await second.open()
    try:
        original = await first.record(charge(7))
        again = await second.record(charge(7))
    finally:
        await first.close()
        await second.close()
    assert again.replayed
    assert again.stored == original.stored


async def test_the_writer_thread_checkpoints_the_wal_into_the_database_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "l.sqlite"
    # No periodic checkpoint during the burst: on a loaded machine 200 commits can outlast the 0.25 s interval,
    # and that checkpoint would be mistaken for one on the commit path.
    monkeypatch.setattr(writer_module, "CHECKPOINT_INTERVAL_S", 3600.0)
    ledger = make_ledger(path)
    await ledger.open()
    try:
        before = path.stat().st_size
        await asyncio.gather(*(ledger.record(charge(i)) for i in range(200)))
        assert path.stat().st_size == before  # committed to the WAL only: no checkpoint on the commit path
        monkeypatch.setattr(writer_module, "CHECKPOINT_INTERVAL_S", 0.05)
        # A commit that meets a held lock goes to the writer thread: that wakes it, and it then finds a checkpoint
        # due (it checkpoints between batches, at most every CHECKPOINT_INTERVAL_S).
        release = threading.Event()
        holder = await asyncio.to_thread(hold_write_lock, path, release)
        pending = asyncio.ensure_future(ledger.record(charge(200)))
        for _ in range(5):  # loop turns, not time: the record is submitted, then flushed and met the lock
            await asyncio.sleep(0)
        release.set()
        assert (await pending).stored.status == 201
        await asyncio.to_thread(holder.join)
        deadline = time.monotonic() + 30
        while path.stat().st_size == before:
            assert time.monotonic() < deadline, "the writer thread never checkpointed"
            await asyncio.sleep(0.05)
    finally:
        await ledger.close()


def test_a_ledger_made_before_asynchronous_settlement_gets_its_status_column(tmp_path: Path) -> None:
    """Every row of an older ledger is settled money: opening it adds `status`, 'succeeded' for each row."""
    path = tmp_path / "old.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(
            "CREATE TABLE repayments (repayment_id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, "
            "user_id TEXT NOT NULL, card_id TEXT NOT NULL, channel TEXT NOT NULL, amount_fen INTEGER NOT NULL, "
            "business_date TEXT NOT NULL, replica TEXT NOT NULL, created_at TEXT NOT NULL)"
        )
        db.execute("INSERT INTO repayments VALUES ('rp_1', 'k1', 'u', 'c', 'ICBC', 100, '2026-11-11', 'r1', 'x')")
        db.commit()
    prepare(path)
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT repayment_id, status FROM repayments").fetchall() == [("rp_1", "succeeded")]
