"""The request history (internals §5 `history/<worker>.csv`): one row per HTTP attempt, for the invariant checks.

The checks compare what clients were told against the ledger, so every attempt is kept, retries and replays
included. Rows are formatted in memory and written in blocks: a write per attempt would cost the generator more
than the attempt itself at a few thousand a second.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import IO

HEADER = [
    "payment_id",
    "key",
    "attempt",
    "user_id",
    "card_id",
    "channel",
    "amount_fen",
    "intended",
    "sent",
    "done",
    "status",
    "code",
    "outcome",
    "repayment_id",
    "replica",
    "business_date",
    "replayed",
    "part",
]
FLUSH_ROWS = 2000


@dataclass(frozen=True, slots=True)
class Attempt:
    """One row; times are unix seconds, `status` 0 when no response came back."""

    payment_id: str
    key: str
    attempt: int
    user_id: str
    card_id: str
    channel: str
    amount_fen: int
    intended: float
    sent: float
    done: float
    status: int
    code: str
    outcome: str
    repayment_id: str
    replica: str
    business_date: str
    replayed: bool
    part: int


class HistoryWriter:
    """Buffered CSV writer of `Attempt`s; `close` (idempotent) writes what is left."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[str] | None = path.open("w", newline="", encoding="utf-8")
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\n")
        self._csv.writerow(HEADER)
        self._rows = 0
        self.written = 0

    def write(self, a: Attempt) -> None:
        """Spelled out field by field: dataclasses.astuple deep-copies and cost more than the HTTP call."""
        self._csv.writerow(
            (
                a.payment_id, a.key, a.attempt, a.user_id, a.card_id, a.channel, a.amount_fen,
                f"{a.intended:.6f}", f"{a.sent:.6f}", f"{a.done:.6f}", a.status, a.code, a.outcome,
                a.repayment_id, a.replica, a.business_date, "true" if a.replayed else "false", a.part,
            )
        )  # fmt: skip
        self._rows += 1
        self.written += 1
        if self._rows >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self._file is None:
            return
        self._file.write(self._buffer.getvalue())
        self._file.flush()
        self._buffer.seek(0)
        self._buffer.truncate()
        self._rows = 0

    def close(self) -> None:
        if self._file is None:
            return
        self.flush()
        self._file.close()
        self._file = None
