"""One group commit's transaction: every request queued in one event-loop turn decided and written at once.

The transaction is a `BEGIN IMMEDIATE`: it takes SQLite's write lock before reading, so the idempotency re-check,
the daily-cap re-check on the authoritative totals and the insert are atomic across every process sharing the
file (a replica that failed over, or active-active peers). Each request is decided in arrival order against
totals that include the earlier ones of the same batch; reads are set-based (one query per table), so a request
costs two row inserts and a share of one commit.

Claims (active-active): a `claim` job marks a key as being processed by this process, in the same transaction
as everything else, so two replicas given one key at once do not both call the bank; a `record` job drops the
claim. A claim is live while its process runs and for at most `CLAIM_LEASE_S`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from mock_gateway.clock import SimClock, business_date
from mock_gateway.quotas import Usage
from mock_gateway.replica.ledger.leases import process_alive
from mock_gateway.replica.ledger.schema import (
    ACCEPT_SQL,
    ACCEPTED,
    INSERT_REPAYMENT_SQL,
    SETTLE_SQL,
    SETTLEMENT_COLUMNS,
    Claim,
    Outcome,
    Stored,
    settlement_document,
)
from mock_gateway.rules import Decide
from mock_gateway.validation import Charge

CLAIM_LEASE_S: Final = 60.0
"""A claim older than this is stale whoever holds it: longer than any request can live (the router gives up
after 5 s, the bank wait is bounded), short enough that a key is never blocked for long by a lost claim."""

JobKind = Literal["record", "claim", "release"]


@dataclass(slots=True)
class Job:
    """A request's ledger step (`record`), or the claim of its key (`claim`) or the release of that claim."""

    charge: Charge
    future: asyncio.Future[Any]
    kind: JobKind = "record"


@dataclass(slots=True)
class SettleJob:
    """A write of the settlement path: the final state (`status` succeeded/failed), or the end of a callback's
    deliveries (`callback` delivered/gave_up); applied only while `epoch` still holds the payment (fencing)."""

    repayment_id: str
    epoch: int
    future: asyncio.Future[Any]
    status: str = ""
    code: str | None = None
    callback: str = ""


Work = Job | SettleJob


class LockBusy(Exception):
    """Another process holds the write lock; the batch is retried where waiting does not block the loop."""


@dataclass(frozen=True, slots=True)
class Transaction:
    """What one replica writes with: its name, its settlement lease holder, its clock and business rules."""

    replica: str
    owner: str
    clock: SimClock
    decide: Decide
    claiming: bool

    def run(self, conn: sqlite3.Connection, batch: list[Work], *, wait: bool) -> list[Any]:
        """The batch's outcomes in its order, committed; raises `LockBusy` when `wait` is false and another
        process holds the write lock (nothing was done)."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not wait and exc.sqlite_errorcode == sqlite3.SQLITE_BUSY:
                raise LockBusy from exc
            raise
        moment, unix = self.clock.now(), time.time()
        day = business_date(moment).isoformat()
        created_at = moment.isoformat()
        jobs = [job for job in batch if isinstance(job, Job)]
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
            if isinstance(job, SettleJob):
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
            decision = self.decide(charge, usage, moment)
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
                    self.replica,
                    created_at,
                )
                if decision.status == ACCEPTED:  # processing, held by this process at epoch 1
                    accepted.append(
                        (*row, "processing", unix, charge.notify_url, None, None, None, "none", self.owner, 1)
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
        if self.claiming:
            conn.executemany("DELETE FROM claims WHERE key = ?", unclaim)
        conn.execute("COMMIT")
        return outcomes

    def _settle_step(self, conn: sqlite3.Connection, job: SettleJob, moment: str) -> object:
        """One fenced write of the settlement path (see `Ledger.settle` and `Ledger.callback_done`)."""
        if job.callback:
            cursor = conn.execute(
                "UPDATE repayments SET callback = ? WHERE repayment_id = ? AND owner = ? AND epoch = ?",
                (job.callback, job.repayment_id, self.owner, job.epoch),
            )
            return cursor.rowcount == 1
        row = conn.execute(
            SETTLE_SQL,
            (job.status, job.code, moment, self.replica, job.repayment_id, self.owner, job.epoch),
        ).fetchone()
        if row is None:
            return None
        settled = dict(zip(SETTLEMENT_COLUMNS.split(", "), row, strict=True))
        conn.execute(
            "UPDATE idempotency SET status = 200, body = ? WHERE key = ?",
            (json.dumps(settlement_document(settled)), settled["idempotency_key"]),
        )
        return settled

    def _claims(self, conn: sqlite3.Connection, batch: list[Job], stored: dict[str, Stored]) -> dict[str, Claim]:
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
            taken.append((charge.key, self.replica, os.getpid(), now))
        conn.executemany("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?)", taken)
        return answers


def _claim_is_live(pid: int, claimed_unix: float, now: float) -> bool:
    """Another process's claim holds while that process runs (a zombie, killed but not yet reaped, does not),
    within the lease; this process's own claim never does."""
    if pid == os.getpid() or now - claimed_unix > CLAIM_LEASE_S:
        return False
    return process_alive(pid)


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
