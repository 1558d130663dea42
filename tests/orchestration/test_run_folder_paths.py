"""A run folder whose path holds URI characters (`#`, `?`, `%`), and harness faults nobody foresaw."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from loadtests.cli import main as cli_main
from loadtests.orchestration.embedded import stop_and_collect
from loadtests.orchestration.run_folder import copy_ledger


def make_ledger(path: Path, rows: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE repayments (repayment_id TEXT PRIMARY KEY)")
        db.executemany("INSERT INTO repayments VALUES (?)", [(f"rp_{i}",) for i in range(rows)])


@pytest.mark.parametrize("name", ["run#1", "run?x=1", "50%25done", "50%done"])
def test_ledger_copy_lands_in_a_folder_named_with_uri_characters(tmp_path: Path, name: str) -> None:
    folder = tmp_path / name
    make_ledger(folder / "cluster" / "ledger.sqlite", 3)
    assert copy_ledger(folder / "cluster" / "ledger.sqlite", folder / "ledger.sqlite")
    with sqlite3.connect(folder / "ledger.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM repayments").fetchone()[0] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [name], "nothing may be created outside the run folder"


class BrokenCluster:
    """Stands in for ClusterProcess: its ledger cannot be copied."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.ledger_path = state_dir / "ledger.sqlite"
        self.events_path = state_dir / "cluster-events.jsonl"
        self.stopped = False

    def stop(self) -> int:
        self.stopped = True
        return 0


def test_a_failed_ledger_copy_still_stops_the_cluster_and_strips_the_token(tmp_path: Path) -> None:
    cluster = BrokenCluster(tmp_path / "run" / "cluster")
    cluster.state_dir.mkdir(parents=True)
    cluster.ledger_path.write_bytes(b"not a database, " * 100)
    (cluster.state_dir / "cluster.json").write_text(json.dumps({"admin_token": "s3cret", "router": {}}))
    with pytest.raises(sqlite3.DatabaseError):
        asyncio.run(stop_and_collect(cluster, tmp_path / "run"))  # type: ignore[arg-type]
    assert cluster.stopped
    assert "s3cret" not in (cluster.state_dir / "cluster.json").read_text()


def test_an_unforeseen_exception_is_one_line_and_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from loadtests.cli import scenarios

    def explode(args: object) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(scenarios, "run", explode)
    assert cli_main.main(["scenarios"]) == 3
    err = capsys.readouterr().err
    assert err.strip() == "surge scenarios: internal error: RuntimeError: boom"
