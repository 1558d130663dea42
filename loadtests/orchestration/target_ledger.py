"""A target's own ledger, read once after the run and copied into the run folder (docs/targets.md).

The profile's `[ledger]` query runs read-only through SQLAlchemy Core — psycopg for PostgreSQL, PyMySQL for
MySQL, the standard library's sqlite3 for SQLite — and its rows are written to `ledger.sqlite` in the gateway
ledger's `repayments` columns, so every checker and `surge verify` read a target's run exactly as an embedded
one. What goes wrong is one line (`HarnessError`, exit 3) in which the URL's password and secret query values
are masked.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import re
import sqlite3
import time
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from errortext.console_text import one_line
from loadtests.errors import HarnessError
from loadtests.scenario.profile_ledger import LedgerSpec, expand_url, single_statement
from runfolder.history import history_rows
from runfolder.layout import RunFolder

REQUIRED = ("key", "card_id", "user_id", "amount_fen", "business_date")
OPTIONAL = ("payment_id", "channel", "status")  # status: with [ledger.status], async settlement
DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg", "mysql": "mysql+pymysql"}
CONNECT_TIMEOUT_S = 10
SQLITE_PROGRESS_STEPS = 10_000
# query keys libpq and PyMySQL read a secret from (password, sslpassword, passwd, ssl_key_password, …)
SECRET_KEY = re.compile(r"pass|secret|token|key", re.IGNORECASE)
SQLITE_INTEGER_MAX = 2**63 - 1
COPY_SCHEMA = """
CREATE TABLE repayments (
  repayment_id TEXT NOT NULL, idempotency_key TEXT NOT NULL,
  user_id TEXT NOT NULL, card_id TEXT NOT NULL, channel TEXT NOT NULL,
  amount_fen INTEGER NOT NULL, business_date TEXT NOT NULL,
  replica TEXT NOT NULL, created_at TEXT NOT NULL
)
"""  # the gateway ledger's columns without its uniqueness: a key recorded twice must survive the copy


def database_url(spec: LedgerSpec, env: Mapping[str, str]) -> URL:
    """The profile's URL with ${NAME} expanded (percent-encoded inside the URL) and the driver surge uses."""
    try:
        url = make_url(expand_url(spec.url, env))
    except ArgumentError:
        raise HarnessError("the ledger url is not a database URL") from None
    dialect = url.drivername.split("+", 1)[0]
    return url.set(drivername=DRIVERS.get(dialect, dialect))


def shown_url(url: URL) -> str:
    """The URL as an error line may show it: the password and every secret-looking query value masked. A password
    written in the profile with a bare `@` splits the URL at its first `@`: the rest of it, taken for the host
    up to the last `@`, is masked too."""
    if url.host and "@" in url.host:
        url = url.set(host=url.host.rpartition("@")[2])
    shown = url.set(query={}).render_as_string(hide_password=True)
    pairs = [
        f"{quote(key)}={'***' if SECRET_KEY.search(key) else quote(item, safe='')}"
        for key, value in url.query.items()
        for item in ((value,) if isinstance(value, str) else value)
    ]
    return f"{shown}?{'&'.join(pairs)}" if pairs else shown


def _secrets(url: URL) -> list[str]:
    """What must never appear in a line: the password and secret query values, raw and percent-encoded."""
    values = [url.password or "", (url.host or "").rpartition("@")[0]]
    for key, value in url.query.items():
        if SECRET_KEY.search(key):
            values += [value] if isinstance(value, str) else list(value)
    found = {text for value in values if value for text in (str(value), quote(str(value), safe=""))}
    return sorted(found, key=len, reverse=True)


def fetch_rows(spec: LedgerSpec, env: Mapping[str, str]) -> list[dict[str, Any]]:
    """The query's rows as dicts; HarnessError (one line, secrets masked) for any failure.

    Read-only three ways: one statement only (checked before connecting, and on PostgreSQL sent with the
    extended protocol, which runs exactly one), a read-only session (PostgreSQL `default_transaction_read_only`
    and a READ ONLY transaction, MySQL `SET SESSION TRANSACTION READ ONLY`, SQLite opened `mode=ro`), and the
    database role, which should be able to SELECT only. Bounded by `spec.timeout_s` (the database's statement
    timeout; SQLite's progress handler).
    """
    try:
        query = single_statement(spec.query)
    except ValueError as exc:
        raise HarnessError(f"the ledger query: {exc}") from None
    url = database_url(spec, env)
    shown, secrets = shown_url(url), _secrets(url)
    started = time.monotonic()
    try:
        engine = _engine(url, spec.timeout_s)
        try:
            with engine.connect() as conn:
                if url.get_backend_name() == "mysql":
                    conn.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")
                    limit = f"max_statement_time = {spec.timeout_s:.3f}"  # MariaDB: seconds
                    if not getattr(conn.dialect, "is_mariadb", False):
                        limit = f"max_execution_time = {math.ceil(spec.timeout_s * 1000)}"  # MySQL: ms
                    conn.exec_driver_sql(f"SET SESSION {limit}")
                elif url.get_backend_name() == "postgresql":
                    conn = conn.execution_options(postgresql_readonly=True)
                result = conn.execute(sa.text(query))
                columns = list(result.keys())
                rows = [dict(zip(columns, row, strict=True)) for row in result]
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        reason = one_line(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0])
        for secret in secrets:
            reason = reason.replace(secret, "***")
        if time.monotonic() - started >= spec.timeout_s:
            reason = f"it ran longer than {spec.timeout_s:g} s ([ledger] timeout_s): {reason}"
        raise HarnessError(f"the ledger query on {shown} failed: {reason}") from None
    missing = [name for name in REQUIRED if name not in columns]
    if missing:
        raise HarnessError(
            f"the ledger query returned columns {columns}; it must return {', '.join(REQUIRED)} "
            f"(missing {', '.join(missing)})"
        )
    return rows


def _engine(url: URL, timeout_s: float) -> sa.Engine:
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")

        def connect() -> sqlite3.Connection:
            # as_uri() percent-encodes the path: `#`, `?` or `%` in it must not cut the URI (and drop mode=ro)
            conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
            deadline = time.monotonic() + timeout_s
            conn.set_progress_handler(lambda: int(time.monotonic() > deadline), SQLITE_PROGRESS_STEPS)
            return conn

        return sa.create_engine("sqlite://", creator=connect, poolclass=sa.NullPool)
    connect_args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S}
    if url.get_backend_name() == "postgresql":
        timeout_ms = math.ceil(timeout_s * 1000)
        connect_args["options"] = f"-c default_transaction_read_only=on -c statement_timeout={timeout_ms}"
    else:  # a backstop to the server's own limit: the socket read gives up a little later
        connect_args["read_timeout"] = math.ceil(timeout_s) + CONNECT_TIMEOUT_S
    engine = sa.create_engine(url, poolclass=sa.NullPool, connect_args=connect_args)
    if url.get_backend_name() == "postgresql":
        sa.event.listen(engine, "do_execute", _extended_protocol)
    return engine


def _extended_protocol(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
    """psycopg sends a parameterless query with the simple protocol, which runs every statement in the string;
    a prepared statement (the extended protocol) is exactly one, whatever the string holds."""
    cursor.execute(statement, parameters, prepare=True)
    return True


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
    states = _states(rows, spec)
    target = RunFolder(run_dir).ledger
    target.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(target)) as conn, conn:
        conn.execute(COPY_SCHEMA)
        conn.executemany("INSERT INTO repayments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", copied)
        if states is not None:  # processing / succeeded / failed: only succeeded rows are money (reports.frames)
            conn.execute("ALTER TABLE repayments ADD COLUMN status TEXT")
            conn.executemany("UPDATE repayments SET status = ? WHERE rowid = ?",
                             [(state, index + 1) for index, state in enumerate(states)])  # fmt: skip
    return len(copied)


def _states(rows: list[dict[str, Any]], spec: LedgerSpec) -> list[str] | None:
    """Each row's settlement state from its `status` column through `[ledger.status]`; None without the column."""
    if not rows or "status" not in rows[0]:
        return None
    if spec.status is None:
        raise HarnessError("the ledger query returns status but the profile has no [ledger.status] mapping")
    states = []
    for index, row in enumerate(rows):
        try:
            states.append(spec.status.state(row["status"]))
        except ValueError as exc:
            raise HarnessError(f"the ledger query's row {index + 1}: {exc}") from None
    return states


def _card_channels(run_dir: Path) -> dict[str, str]:
    """card_id -> channel from the run's history: the query need not return the channel."""
    return {row["card_id"]: row["channel"] for row in history_rows(run_dir)}


def _ledger_row(row: dict[str, Any], channel_of: dict[str, str], index: int) -> tuple[Any, ...]:
    key, card_id, user_id = (_text(row[name], name) for name in ("key", "card_id", "user_id"))
    amount = row["amount_fen"]
    finite = isinstance(amount, int) or (isinstance(amount, Decimal | float) and math.isfinite(amount))
    if isinstance(amount, bool) or not finite or amount != int(amount):
        raise ValueError(f"amount_fen must be a whole number of fen (got {amount!r})")
    if abs(int(amount)) > SQLITE_INTEGER_MAX:
        raise ValueError(f"amount_fen {amount!r} is out of range")
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
