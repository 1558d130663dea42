"""A target's own ledger, read once after the run and copied into the run folder (CONTRACT §7).

The profile's `[ledger]` query runs read-only through SQLAlchemy Core — psycopg for PostgreSQL, PyMySQL for
MySQL, the standard library's sqlite3 for SQLite — and its rows are written to `ledger.sqlite` in the gateway
ledger's `repayments` columns, so every checker and `surge verify` read a target's run exactly as an embedded
one. What goes wrong is one line (`HarnessError`, exit 3) in which the URL's password is masked.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from loadtests.errors import HarnessError
from loadtests.scenario.profile import LedgerSpec, expand_env
from reports.frames import read_history

REQUIRED = ("key", "card_id", "user_id", "amount_fen", "business_date")
OPTIONAL = ("payment_id", "channel")
DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg", "mysql": "mysql+pymysql"}
CONNECT_TIMEOUT_S = 10
COPY_SCHEMA = """
CREATE TABLE repayments (
  repayment_id TEXT NOT NULL, idempotency_key TEXT NOT NULL,
  user_id TEXT NOT NULL, card_id TEXT NOT NULL, channel TEXT NOT NULL,
  amount_fen INTEGER NOT NULL, business_date TEXT NOT NULL,
  replica TEXT NOT NULL, created_at TEXT NOT NULL
)
"""  # the gateway ledger's columns without its uniqueness: a key recorded twice must survive the copy


def database_url(spec: LedgerSpec, env: Mapping[str, str]) -> URL:
    """The profile's URL with ${NAME} expanded and the driver surge uses for its dialect."""
    try:
        url = make_url(expand_env(spec.url, env))
    except ArgumentError:
        raise HarnessError("the ledger url is not a database URL") from None
    dialect = url.drivername.split("+", 1)[0]
    return url.set(drivername=DRIVERS.get(dialect, dialect))


def fetch_rows(spec: LedgerSpec, env: Mapping[str, str]) -> list[dict[str, Any]]:
    """The query's rows as dicts, run in a read-only transaction; HarnessError for any failure."""
    url = database_url(spec, env)
    shown = url.render_as_string(hide_password=True)
    secret = url.password
    try:
        engine = _engine(url)
        try:
            with engine.connect() as conn:
                if url.get_backend_name() == "mysql":
                    conn.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")
                elif url.get_backend_name() == "postgresql":
                    conn = conn.execution_options(postgresql_readonly=True)
                result = conn.execute(sa.text(spec.query))
                columns = list(result.keys())
                rows = [dict(zip(columns, row, strict=True)) for row in result]
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        if secret:
            reason = reason.replace(str(secret), "***")
        raise HarnessError(f"the ledger query on {shown} failed: {reason}") from None
    missing = [name for name in REQUIRED if name not in columns]
    if missing:
        raise HarnessError(
            f"the ledger query returned columns {columns}; it must return {', '.join(REQUIRED)} "
            f"(missing {', '.join(missing)})"
        )
    return rows


def _engine(url: URL) -> sa.Engine:
    if url.get_backend_name() == "sqlite":
        path = url.database or ""
        return sa.create_engine(
            "sqlite://", creator=lambda: sqlite3.connect(f"file:{path}?mode=ro", uri=True), poolclass=sa.NullPool
        )
    connect_args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S}
    return sa.create_engine(url, poolclass=sa.NullPool, connect_args=connect_args)


def copy_target_ledger(spec: LedgerSpec, env: Mapping[str, str], run_dir: Path) -> int:
    """Run the query and write `run_dir/ledger.sqlite`; the number of rows copied."""
    rows = fetch_rows(spec, env)
    channel_of = _card_channels(run_dir)
    copied = []
    for index, row in enumerate(rows):
        try:
            copied.append(_ledger_row(row, channel_of, index))
        except (TypeError, ValueError) as exc:
            raise HarnessError(f"the ledger query's row {index + 1} is not usable: {exc}") from None
    target = run_dir / "ledger.sqlite"
    target.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(target)) as conn, conn:
        conn.execute(COPY_SCHEMA)
        conn.executemany("INSERT INTO repayments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", copied)
    return len(copied)


def _card_channels(run_dir: Path) -> dict[str, str]:
    """card_id -> channel from the run's history: the query need not return the channel."""
    history_dir = run_dir / "history"
    if not history_dir.is_dir():
        return {}
    history = read_history(history_dir)
    return dict(zip(history["card_id"], history["channel"], strict=True))


def _ledger_row(row: dict[str, Any], channel_of: dict[str, str], index: int) -> tuple[Any, ...]:
    key, card_id, user_id = (_text(row[name], name) for name in ("key", "card_id", "user_id"))
    amount = row["amount_fen"]
    if isinstance(amount, bool) or not isinstance(amount, int | Decimal | float) or amount != int(amount):
        raise ValueError(f"amount_fen must be a whole number of fen (got {amount!r})")
    day = row["business_date"]
    business_date = day.isoformat() if isinstance(day, dt.date) else dt.date.fromisoformat(str(day)).isoformat()
    payment_id = row.get("payment_id")
    channel = row.get("channel")
    return (
        _text(payment_id, "payment_id") if payment_id is not None else f"row-{index + 1}",
        key,
        user_id,
        card_id,
        _text(channel, "channel") if channel is not None else channel_of.get(card_id, ""),
        int(amount),
        business_date[:10],
        "",
        "",
    )


def _text(value: Any, name: str) -> str:
    if value is None:
        raise ValueError(f"{name} is NULL")
    return str(value)
