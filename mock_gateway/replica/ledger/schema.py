"""The ledger file's tables, the statements run on them, and the rows they are read back as.

An async payment is one `repayments` row like a sync one, with its settlement columns filled in (NULL on sync
rows), plus an entry in one partial index over the open payments only (appended to: ids are time-ordered): a
separate table cost two more B-trees per acceptance, measured ~20 µs a row (docs/perf/gateway-async.md). Every
statement is built once from the constants here; no input is ever formatted into one.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

from mock_gateway.quotas import Usage

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
OPEN: Final = "(status = 'processing' OR callback = 'pending')"
HELD_SQL: Final = f"SELECT repayment_id FROM repayments WHERE owner = ? AND {OPEN}"  # noqa: S608
TAKE_SQL: Final = (
    f"UPDATE repayments SET owner = ?, epoch = epoch + 1 WHERE owner = ? AND {OPEN} "  # noqa: S608
    f"RETURNING rowid AS rowid, {SETTLEMENT_COLUMNS}"
)
# A settlement worker's backlog is the ledger's: it reads its next payments in arrival (rowid) order from where
# it left off, over the open-payments index, instead of holding every accepted payment in memory.
WAITING_SQL: Final = (
    "SELECT rowid, repayment_id, epoch, accepted_unix FROM repayments "
    "WHERE owner = ? AND status = 'processing' AND channel = ? AND rowid > ? ORDER BY rowid LIMIT ?"
)
WAITING_COUNT_SQL: Final = "SELECT COUNT(*) FROM repayments WHERE owner = ? AND status = 'processing' AND channel = ?"
SETTLE_SQL: Final = (
    "UPDATE repayments SET status = ?, code = ?, settled_at = ?, settled_by = ?, "  # noqa: S608
    "callback = CASE WHEN notify_url IS NULL THEN 'none' ELSE 'pending' END "
    "WHERE repayment_id = ? AND owner = ? AND epoch = ? AND status = 'processing' "
    f"RETURNING {SETTLEMENT_COLUMNS}"
)
READ_SQL: Final = f"SELECT {SETTLEMENT_COLUMNS} FROM repayments WHERE repayment_id = ?"  # noqa: S608
ACCEPTED: Final = 202  # the decision of an asynchronous channel: the payment is recorded, the bank settles later


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


class Settlement(NamedTuple):
    """A pending payment this replica now holds: accepted here, or taken over from another replica."""

    rowid: int  # its place in arrival order
    repayment_id: str
    channel: str
    epoch: int
    accepted_unix: float
    processing: bool  # False: settled, its callback still to deliver
    document: dict[str, Any]  # what GET /v1/repayments/{id} answers (the callback is built from it)
    notify_url: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Settlement:
        return cls(
            rowid=row["rowid"],
            repayment_id=row["repayment_id"],
            channel=row["channel"],
            epoch=row["epoch"],
            accepted_unix=row["accepted_unix"],
            processing=row["status"] == "processing",
            document=settlement_document(row),
            notify_url=row["notify_url"],
        )


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
