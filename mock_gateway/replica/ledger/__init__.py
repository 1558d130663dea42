"""The durable ledger: SQLite in WAL mode, shared by every replica of a cluster (docs/internals.md §2).

`Ledger` is the one object a replica holds; each part of its work and lifecycle lives in its own module:
`storage` creates and opens the file, `writer` group-commits the writes of each event-loop turn, `batch` is the
transaction those writes run in, `reads` answers on the loop without waiting, `leases` hands async payments
over between processes, and `schema` names the tables and the rows read back. A request is answered only after
its transaction has committed; `ledger.synchronous` decides what a commit survives (see `storage`).

Readiness: after `UNREADY_AFTER_FAILED_COMMITS` failed commits in a row the ledger reports itself not ready
until a real-size write probe commits (`readiness()`).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path
from typing import Any, Final

from mock_gateway.clock import SimClock
from mock_gateway.replica.ledger.batch import Job, SettleJob, Transaction
from mock_gateway.replica.ledger.leases import Leases
from mock_gateway.replica.ledger.reads import Reads
from mock_gateway.replica.ledger.schema import Claim, Outcome, Settlement, Stored
from mock_gateway.replica.ledger.storage import OPEN_RETRY_S, Synchronous, prepare, probe_write
from mock_gateway.replica.ledger.writer import CommitObserver, GroupCommit
from mock_gateway.rules import Decide
from mock_gateway.validation import Charge

UNREADY_AFTER_FAILED_COMMITS: Final = 3
"""Consecutive failed commits (disk full, a file size limit, I/O errors) after which the replica stops being
ready, so the router takes it out; a successful commit or write probe makes it ready again."""


class Ledger:
    """Open with `await open()`, record with `await record(charge)`, read with the plain methods."""

    def __init__(
        self,
        path: Path,
        *,
        replica: str,
        clock: SimClock,
        decide: Decide,
        synchronous: Synchronous = "normal",
        busy_timeout_ms: int = 5000,
        on_commit: CommitObserver | None = None,
        claiming: bool = False,
    ) -> None:
        """`claiming`: keys are claimed in the ledger before the bank call (`claim()`), for replicas that take
        traffic side by side (active-active); the ledger step then also drops the claim."""
        self.path = path
        self._replica = replica
        self._clock = clock
        self._synchronous: Synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._claiming = claiming
        # The holder of this process's settlement lease: name, pid and a nonce, so a restarted replica of the
        # same name (or a reused pid) is another holder and takes its predecessor's payments over like any other.
        self.owner = f"{replica}/{os.getpid()}/{secrets.token_hex(4)}"
        transaction = Transaction(replica, self.owner, clock, decide, claiming)
        self._writes = GroupCommit(
            path, transaction, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms, on_commit=on_commit
        )
        self._reads = Reads(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
        self._leases = Leases(
            path, owner=self.owner, replica=replica, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms
        )

    async def open(self) -> None:
        await asyncio.to_thread(prepare, self.path, timeout_s=OPEN_RETRY_S)
        self._reads.open()
        self._writes.start()

    async def close(self) -> None:
        """Commit whatever is queued, then close; called after the server stopped taking requests."""
        await self._writes.close()
        self._reads.close()
        self._leases.close()

    @property
    def claiming(self) -> bool:
        """Whether requests claim their key in the ledger before the bank call (see `claim`)."""
        return self._claiming

    async def record(self, charge: Charge) -> Outcome:
        """The atomic ledger step; raises `LedgerError` when nothing could be committed. It also drops the key's
        claim, in the same transaction."""
        outcome: Outcome = await self._writes.submit(Job(charge, self._writes.future(), "record"))
        return outcome

    async def claim(self, charge: Charge) -> Claim:
        """Claim the key across every replica sharing the ledger before the bank is called (active-active).

        In one transaction with the writes of other replicas: a stored response for the key is returned to be
        replayed; a live claim of another replica is returned as `held_by` (409 IDEMPOTENCY_IN_FLIGHT); else the
        key is claimed for this process. A claim is live while its process runs (same host: the ledger is a
        local SQLite file) and for at most `CLAIM_LEASE_S`, so a killed replica's claims free their keys at once.
        A claim of this very process is stale by definition: the caller checked its own in-flight set first.
        """
        claim: Claim = await self._writes.submit(Job(charge, self._writes.future(), "claim"))
        return claim

    async def release(self, charge: Charge) -> None:
        """Drop this process's claim on the key when the request ends without a ledger step."""
        await self._writes.submit(Job(charge, self._writes.future(), "release"))

    # --- settlement (asynchronous channels) ---------------------------------------------------------

    async def settle(self, repayment_id: str, epoch: int, status: str, code: str | None) -> dict[str, Any] | None:
        """The payment's final write, in the group commit: status, the release of a refused payment's
        reservation, and the key's stored answer, all only if `epoch` still holds the payment. Returns the
        settled row (None: another replica took the payment over meanwhile — fenced, nothing written)."""
        job = SettleJob(repayment_id, epoch, self._writes.future(), status=status, code=code)
        settled: dict[str, Any] | None = await self._writes.submit(job)
        return settled

    async def callback_done(self, repayment_id: str, epoch: int, callback: str) -> bool:
        """Mark the payment's callback `delivered` or `gave_up`, if `epoch` still holds it."""
        done: bool = await self._writes.submit(SettleJob(repayment_id, epoch, self._writes.future(), callback=callback))
        return done

    async def maintain(self, lease_s: float) -> tuple[set[str] | None, list[Settlement]]:
        """Renew this process's lease and take over the open payments of every holder whose process is gone or
        whose lease ran out (see `leases`). In a thread: it may wait for the write lock."""
        return await asyncio.to_thread(self._leases.maintain, lease_s)

    async def waiting(self, channel: str, after_rowid: int, limit: int) -> list[tuple[int, str, int, float]]:
        """This process's payments on `channel` that wait for the bank, in arrival order after `after_rowid`:
        (rowid, repayment_id, epoch, accepted_unix)."""
        return await self._reads.waiting(self.owner, channel, after_rowid, limit)

    async def waiting_count(self, channel: str) -> int:
        """How many payments this process holds on `channel` that wait for the bank."""
        return await self._reads.waiting_count(self.owner, channel)

    # --- reads --------------------------------------------------------------------------------------

    async def lookup(self, key: str) -> Stored | None:
        """The response stored against `key`, if any."""
        return await self._reads.lookup(key, self._writes.inline)

    async def repayment(self, repayment_id: str) -> dict[str, Any] | None:
        return await self._reads.repayment(repayment_id)

    async def user_day(self, user_id: str, day: str) -> tuple[int, list[tuple[str, str, int]]]:
        """The user's total on `day` and, for every card the user ever repaid, (card, channel, card total)."""
        return await self._reads.user_day(user_id, day)

    async def readiness(self) -> str:
        """Empty when the ledger can take writes; else why not (for /readyz).

        After `UNREADY_AFTER_FAILED_COMMITS` failed commits in a row the replica is not ready; each readiness
        check then tries one small real commit (a heartbeat row, in a thread), and its success makes the replica
        ready again: without it, a replica taken out of traffic would never commit again to prove it can.
        """
        if not self._writes.running:
            return "the ledger is not open"
        failed = self._writes.failed_commits
        if failed >= UNREADY_AFTER_FAILED_COMMITS:
            problem = await asyncio.to_thread(
                probe_write,
                self.path,
                synchronous=self._synchronous,
                busy_timeout_ms=self._busy_timeout_ms,
                replica=self._replica,
                at=self._clock.now().isoformat(),
            )
            if problem:
                return f"the last {failed} ledger commits failed ({problem})"
            self._writes.failed_commits = 0
        return self._reads.unreadable()
