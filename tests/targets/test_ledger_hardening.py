"""The team's database, read after the run: one read-only statement, bounded in time, no secret in any line,
any amount turned into the documented "row N is not usable" line, and SQLite paths the URL parser would cut."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from loadtests.errors import HarnessError
from loadtests.orchestration import target_ledger
from loadtests.orchestration.target_ledger import copy_target_ledger, database_url, fetch_rows
from loadtests.scenario.profile import load_profile
from loadtests.scenario.profile_ledger import LedgerSpec
from loadtests.scenario.profile_templates import ProfileError
from tests.support.postgres import Postgres

COLUMNS = "'k1' AS key, 'c1' AS card_id, 'u1' AS user_id, 100 AS amount_fen, '2026-11-11' AS business_date"
ATTACKS = [
    f"SELECT {COLUMNS} FROM victim; COMMIT; DROP TABLE victim",  # noqa: S608
    f"COMMIT; DELETE FROM victim; SELECT {COLUMNS}",  # noqa: S608
    f"END; CREATE TABLE pwned (x int); SELECT {COLUMNS}",
]
PROFILE = """
name = "acme"
base_url = "http://127.0.0.1:9"
[request]
method = "POST"
path = "/pay"
body = '{{"key": "{{key}}"}}'
[[response.rules]]
status = [201]
outcome = "succeeded"
[ledger]
url = {url}
query = "SELECT 1"
"""


def _victim(postgres: Postgres) -> None:
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS pwned")
        conn.execute("CREATE TABLE IF NOT EXISTS victim (k TEXT)")
        conn.execute("DELETE FROM victim")
        conn.execute("INSERT INTO victim VALUES ('row')")


def _untouched(postgres: Postgres) -> None:
    with psycopg.connect(postgres.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM victim").fetchone() == (1,)
        assert conn.execute("SELECT to_regclass('pwned') IS NULL").fetchone() == (True,)


@pytest.mark.parametrize("query", ATTACKS)
def test_a_query_of_several_statements_is_refused_before_connecting(query: str) -> None:
    """`SELECT …; COMMIT; DROP TABLE victim` dropped the table and reported success."""
    with pytest.raises(ValidationError, match="one statement only"):
        LedgerSpec(url="postgresql://acme@127.0.0.1:1/acme", query=query)
    unchecked = LedgerSpec.model_construct(url="postgresql://acme@127.0.0.1:1/acme", query=query, timeout_s=5.0)
    with pytest.raises(HarnessError, match="one statement only"):
        fetch_rows(unchecked, {})  # port 1: it would fail differently had it connected


def test_a_trailing_semicolon_is_one_statement() -> None:
    assert LedgerSpec(url="sqlite:////x.db", query="SELECT 1;\n").query == "SELECT 1"


@pytest.mark.parametrize("query", ATTACKS)
def test_several_statements_never_run_even_past_the_check(postgres: Postgres, query: str) -> None:
    """Below the `;` check, the extended protocol runs one statement and the session itself is read-only."""
    _victim(postgres)
    engine = target_ledger._engine(database_url(LedgerSpec(url=postgres.dsn, query="SELECT 1"), {}), 5.0)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW default_transaction_read_only").scalar() == "on"
            with pytest.raises(sa.exc.ProgrammingError, match="cannot insert multiple commands"):
                conn.execute(sa.text(query))
    finally:
        engine.dispose()
    _untouched(postgres)


def test_a_slow_query_is_stopped_at_its_timeout(postgres: Postgres, tmp_path: Path) -> None:
    """`… FROM pg_sleep(25)` held the end of the run 25 s."""
    spec = LedgerSpec(url=postgres.dsn, query=f"SELECT {COLUMNS} FROM pg_sleep(25)", timeout_s=1)  # noqa: S608
    started = time.monotonic()
    with pytest.raises(HarnessError, match=r"ran longer than 1 s \(\[ledger\] timeout_s\)") as caught:
        copy_target_ledger(spec, {}, tmp_path)
    assert time.monotonic() - started < 10
    assert "\n" not in str(caught.value) and postgres.password not in str(caught.value)


def test_the_default_timeout_is_documented_and_applied() -> None:
    assert LedgerSpec(url="sqlite:////x.db", query="SELECT 1").timeout_s == 60


@pytest.mark.parametrize("amount", ["1e999", "-1e999", "1e30", "9223372036854775808"])
def test_an_infinite_or_huge_amount_is_the_row_not_usable_line(tmp_path: Path, amount: str) -> None:
    """`amount_fen` of Infinity or 1e30 gave `internal error: OverflowError`."""
    source = tmp_path / "team.db"
    sqlite3.connect(source).close()
    query = (
        f"SELECT 'k1' AS key, 'c1' AS card_id, 'u1' AS user_id, {amount} AS amount_fen, '2026-11-11' AS business_date"
    )
    spec = LedgerSpec(url=f"sqlite:///{source}", query=query)
    with pytest.raises(HarnessError, match="the ledger query's row 1 is not usable: amount_fen"):
        copy_target_ledger(spec, {}, tmp_path)


def test_a_numeric_infinity_from_postgres_is_the_row_not_usable_line(postgres: Postgres, tmp_path: Path) -> None:
    query = "SELECT 'k1' AS key, 'c1' AS card_id, 'u1' AS user_id, 'Infinity'::numeric AS amount_fen, "
    spec = LedgerSpec(url=postgres.dsn, query=query + "DATE '2026-11-11' AS business_date")
    with pytest.raises(HarnessError, match="row 1 is not usable: amount_fen must be a whole number"):
        copy_target_ledger(spec, {}, tmp_path)


SECRET = "a@b-secret9/x?y#z%"


@pytest.fixture
def odd_password(postgres: Postgres) -> str:
    """A role whose password holds every character that splits a URL."""
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS surge_ro; CREATE ROLE surge_ro LOGIN PASSWORD '{SECRET}'")
    return SECRET


@pytest.mark.parametrize(
    "template",
    [
        "postgresql://surge_ro:${PW}@127.0.0.1:{port}/acme",
        "postgresql://surge_ro@127.0.0.1:{port}/acme?password=${PW}",
        "postgresql://surge_ro@127.0.0.1:{port}/acme?password=${PW}&sslpassword=${PW}",
    ],
)
def test_the_password_never_reaches_an_error_line(postgres: Postgres, odd_password: str, template: str) -> None:
    """`?password=${PW}` and `sslpassword=` were printed; a password with `@` split the URL and half showed."""
    url = template.replace("{port}", str(postgres.port))
    spec = LedgerSpec(url=url, query="SELECT * FROM no_such_table")
    with pytest.raises(HarnessError) as caught:
        copy_target_ledger(spec, {"PW": odd_password}, Path("/nonexistent"))
    message = str(caught.value)
    assert 'relation "no_such_table" does not exist' in message, message  # it connected: the password worked
    assert "secret9" not in message and "a%40b" not in message
    assert "***" in message and "\n" not in message


def test_a_wrong_password_and_its_error_line(postgres: Postgres) -> None:
    url = f"postgresql://acme@127.0.0.1:{postgres.port}/acme?sslpassword=${{PW}}&password=${{PW}}"
    with pytest.raises(HarnessError) as caught:
        fetch_rows(LedgerSpec(url=url, query="SELECT 1"), {"PW": "wrong-" + SECRET})
    assert "secret9" not in str(caught.value) and "password authentication failed" in str(caught.value)


def test_a_whole_url_from_one_variable_is_accepted(postgres: Postgres, tmp_path: Path) -> None:
    """`url = "${DATABASE_URL}"` was refused: its scheme was checked before the expansion."""
    profile_path = tmp_path / "target.toml"
    profile_path.write_text(PROFILE.format(url='"${DATABASE_URL}"'), encoding="utf-8")
    profile = load_profile(profile_path, allow_remote=False, env={"DATABASE_URL": postgres.dsn})
    assert profile.ledger is not None and profile.ledger.url == "${DATABASE_URL}"
    spec = profile.ledger.model_copy(update={"query": f"SELECT {COLUMNS}"})
    rows = fetch_rows(spec, {"DATABASE_URL": postgres.dsn})
    assert rows[0]["key"] == "k1"
    with pytest.raises(ProfileError, match=r"\$\{DATABASE_URL\} does not hold a postgresql") as caught:
        load_profile(profile_path, allow_remote=False, env={"DATABASE_URL": "hunter2-not-a-url"})
    assert "hunter2" not in str(caught.value)


def test_a_sqlite_path_holding_hash_question_mark_and_percent_is_read_read_only(tmp_path: Path) -> None:
    """`#`, `?` or `%` cut the `file:` URI: `mode=ro` was dropped and a stray empty database created."""
    folder = tmp_path / "ledgers #1?50%"
    folder.mkdir()
    source = folder / "team.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE pay (k TEXT)")
        conn.execute("INSERT INTO pay VALUES ('k1')")
    conn.close()
    query = "SELECT k AS key, 'c1' AS card_id, 'u1' AS user_id, 100 AS amount_fen, '2026-11-11' AS business_date"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    spec = LedgerSpec(url="sqlite:///${LEDGER}", query=query + " FROM pay")
    assert copy_target_ledger(spec, {"LEDGER": str(source)}, run_dir) == 1
    assert sorted(path.name for path in tmp_path.rglob("*")) == sorted(
        ["ledgers #1?50%", "team.db", "run", "ledger.sqlite"]
    )
    write = LedgerSpec(url="sqlite:///${LEDGER}", query="INSERT INTO pay VALUES ('x') RETURNING k AS key")
    with pytest.raises(HarnessError, match="readonly database"):
        fetch_rows(write, {"LEDGER": str(source)})


def test_a_bare_at_sign_in_a_written_password_does_not_show_half_of_it() -> None:
    url = database_url(LedgerSpec(url="postgresql://acme:a@b-secret9@127.0.0.1:5432/acme", query="SELECT 1"), {})
    shown = target_ledger.shown_url(url)
    assert shown == "postgresql+psycopg://acme:***@127.0.0.1:5432/acme"
    assert "b-secret9" in target_ledger._secrets(url)  # masked in the driver's error text too
