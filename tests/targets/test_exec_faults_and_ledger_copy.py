"""exec faults (argv, undo, timeout -> events) and the ledger copy's failures: one line, exit 3, no password."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import time
from pathlib import Path

import psycopg
import pytest

from loadtests.errors import HarnessError
from loadtests.orchestration.chaos import ChaosEvent
from loadtests.orchestration.exec_faults import ExecPlayer
from loadtests.orchestration.target_ledger import copy_target_ledger, database_url
from loadtests.scenario.parts import Fault
from loadtests.scenario.profile_ledger import LedgerSpec
from reports.frames import read_ledger
from runfolder.history import HISTORY_COLUMNS, Attempt, history_line
from runfolder.layout import RunFolder
from tests.support.postgres import Postgres
from tests.support.procs import free_port


async def test_exec_faults_log_injected_cleared_and_failed(tmp_path: Path) -> None:
    marker = tmp_path / "undone"
    faults = [
        Fault(at_s=0, action="exec", target="svc", command=("true",), undo=("touch", str(marker)), duration_s=0.1),
        Fault(
            at_s=0, action="exec", target="bad", command=(sys.executable, "-c", "print('nope'); raise SystemExit(4)")
        ),
        Fault(at_s=0, action="exec", target="slow", command=("sleep", "30"), timeout_s=0.3),
        Fault(at_s=0, action="exec", target="absent", command=("/nonexistent/tool",)),
    ]
    player = ExecPlayer(faults, start_unix=0.0)
    await player.play()
    seen = {(event.kind, event.target) for event in player.events}
    assert seen == {
        ("fault_injected", "svc"),
        ("fault_cleared", "svc"),
        ("fault_failed", "bad"),
        ("fault_failed", "slow"),
        ("fault_failed", "absent"),
    }
    details = {event.target: event.detail for event in player.events if event.kind == "fault_failed"}
    assert "exit 4: nope" in details["bad"]
    assert "timed out" in details["slow"]
    assert marker.exists()


async def test_undo_pays_what_is_owed_once_when_the_schedule_is_cut_short(tmp_path: Path) -> None:
    undone = tmp_path / "undone.log"
    append = [sys.executable, "-c", "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n')", str(undone)]
    faults = [
        Fault(at_s=0, action="exec", target="delay", command=("true",), undo=(*append, "delay"), duration_s=60),
        Fault(at_s=0, action="exec", target="broken", command=("false",), undo=(*append, "broken"), duration_s=60),
        Fault(at_s=30, action="exec", target="later", command=("true",), undo=(*append, "later"), duration_s=1),
    ]
    both_played = asyncio.Event()

    def on_event(_: ChaosEvent) -> None:
        if {event.target for event in player.events} == {"delay", "broken"}:
            both_played.set()

    player = ExecPlayer(faults, start_unix=time.time(), on_event=on_event)
    playing = asyncio.create_task(player.play())
    await asyncio.wait_for(both_played.wait(), timeout=20)
    playing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await playing
    assert not undone.exists(), "nothing is undone before it is asked"
    await player.undo()
    await player.undo()
    assert undone.read_text().split() == ["delay"], "owed once; a failed or unplayed injection owes nothing"
    assert [event.kind for event in player.events if event.target == "delay"] == ["fault_injected", "fault_cleared"]


def test_a_sqlite_ledger_is_copied_in_the_checkers_schema(tmp_path: Path) -> None:
    source = tmp_path / "team.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE pay (req TEXT, card TEXT, uid TEXT, fen INTEGER, day TEXT)")
        conn.executemany("INSERT INTO pay VALUES (?, ?, ?, ?, ?)", [("k1", "c1", "u1", 100, "2026-11-11")] * 2)
    query = "SELECT req AS key, card AS card_id, uid AS user_id, fen AS amount_fen, day AS business_date FROM pay"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert copy_target_ledger(LedgerSpec(url=f"sqlite:///{source}", query=query), {}, run_dir) == 2
    ledger = read_ledger(run_dir / "ledger.sqlite")
    assert ledger is not None
    assert list(ledger["idempotency_key"]) == ["k1", "k1"]  # a key recorded twice survives for `duplicate`
    assert list(ledger["amount_fen"]) == [100, 100]


def test_a_ledger_without_channels_takes_each_cards_channel_from_the_history(tmp_path: Path) -> None:
    source = tmp_path / "team.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE pay (req TEXT, card TEXT, uid TEXT, fen INTEGER, day TEXT)")
        conn.executemany("INSERT INTO pay VALUES (?, ?, ?, ?, ?)", [("k1", "c1", "u1", 100, "2026-11-11"),
                                                                    ("k2", "c9", "u2", 100, "2026-11-11")])  # fmt: skip
    query = "SELECT req AS key, card AS card_id, uid AS user_id, fen AS amount_fen, day AS business_date FROM pay"
    run_dir = tmp_path / "run"
    RunFolder(run_dir).history.mkdir(parents=True)
    made = Attempt("p1", "k1", 1, "u1", "c1", "ALIPAY", 100, 1.0, 1.0, 1.5, 201, "", "succeeded", "rp", "r1",
                   "2026-11-11", False, 0)  # fmt: skip
    RunFolder(run_dir).history_of(0).write_text(",".join(HISTORY_COLUMNS) + "\n" + history_line(made), "utf-8")
    assert copy_target_ledger(LedgerSpec(url=f"sqlite:///{source}", query=query), {}, run_dir) == 2
    ledger = read_ledger(run_dir / "ledger.sqlite")
    assert ledger is not None
    assert list(ledger["channel"]) == ["ALIPAY", ""]  # a card the history never saw has no channel


def test_wrong_columns_are_one_line(tmp_path: Path) -> None:
    source = tmp_path / "team.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE pay (req TEXT)")
    spec = LedgerSpec(url=f"sqlite:///{source}", query="SELECT req AS key FROM pay")
    with pytest.raises(HarnessError, match="missing card_id, user_id, amount_fen, business_date"):
        copy_target_ledger(spec, {}, tmp_path)


@pytest.mark.parametrize("query", ["SELECT * FROM no_such_table", "INSERT INTO x VALUES (1)"])
def test_a_failing_postgres_query_is_one_line_without_the_password(postgres: Postgres, query: str) -> None:
    spec = LedgerSpec(url="postgresql://acme:${PW}@127.0.0.1:" + str(postgres.port) + "/acme", query=query)
    with pytest.raises(HarnessError) as caught:
        copy_target_ledger(spec, {"PW": postgres.password}, Path("/nonexistent"))
    message = str(caught.value)
    assert "\n" not in message
    assert postgres.password not in message
    assert "***" in message


def test_the_query_runs_read_only(postgres: Postgres, tmp_path: Path) -> None:
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS scratch (k TEXT)")
    spec = LedgerSpec(
        url=postgres.dsn,
        query="INSERT INTO scratch VALUES ('k') RETURNING k AS key, 'c' AS card_id, 'u' AS user_id, "
        "1 AS amount_fen, DATE '2026-11-11' AS business_date",
    )
    with pytest.raises(HarnessError, match="read-only transaction"):
        copy_target_ledger(spec, {}, tmp_path)
    with psycopg.connect(postgres.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM scratch").fetchone() == (0,)


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://u:${PW}@127.0.0.1:5432/pay", "postgresql+psycopg"),
        ("postgres://u:${PW}@127.0.0.1/pay", "postgresql+psycopg"),
        ("mysql://u:${PW}@127.0.0.1:3306/pay", "mysql+pymysql"),
        ("sqlite:////var/lib/pay.db", "sqlite"),
    ],
)
def test_each_dialect_gets_the_driver_surge_ships(url: str, driver: str) -> None:
    resolved = database_url(LedgerSpec(url=url, query="SELECT 1"), {"PW": "pw"})
    assert resolved.drivername == driver
    assert resolved.password in (None, "pw")


def test_an_unreachable_mysql_is_one_line_without_the_password(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    spec = LedgerSpec(url=f"mysql://surge:${{PW}}@127.0.0.1:{port}/pay", query="SELECT 1")
    with pytest.raises(HarnessError) as caught:
        copy_target_ledger(spec, {"PW": "my-Sql-pw-31"}, tmp_path)
    message = str(caught.value)
    assert message.startswith(f"the ledger query on mysql+pymysql://surge:***@127.0.0.1:{port}/pay failed")
    assert "my-Sql-pw-31" not in message
    assert "\n" not in message
