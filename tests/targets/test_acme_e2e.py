"""End to end against examples/acme on a real PostgreSQL: surge's counts equal the rows the ledger holds, and
the acme bug (acknowledge, then roll back) is found and named by key. Real processes only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from tests.targets.postgres import PASSWORD, Postgres, free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
ACME = ROOT / "examples" / "acme"
SURGE = Path(sys.executable).with_name("surge")


@contextmanager
def acme(postgres: Postgres, log: Path, *extra: str) -> Iterator[str]:
    """acme-pay on a free port over an emptied payments table; its base URL."""
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS payments")
    port = free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, str(ACME / "server.py"), "--dsn", postgres.dsn, "--port", str(port), *extra],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 20
        while True:
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=1).close()  # noqa: S310 (loopback)
                break
            except OSError:
                assert process.poll() is None, log.read_text()
                assert time.time() < deadline, "acme did not start"
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def surge_run(postgres: Postgres, url: str, out: Path, duration_s: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ACME_DB_PASSWORD": postgres.password, "ACME_DB_PORT": str(postgres.port)}
    command = [str(SURGE), "run", str(ACME / "scenario.toml"), "--target", str(ACME / "target.toml"),
               "--host", url, "--duration", str(duration_s), "--out", str(out)]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=duration_s + 120, cwd=ROOT)


def payments(postgres: Postgres) -> set[str]:
    with psycopg.connect(postgres.dsn) as conn:
        return {row[0] for row in conn.execute("SELECT req_no FROM payments")}


def acknowledged_keys(out: Path) -> set[str]:
    keys: set[str] = set()
    for path in (out / "history").glob("*.csv"):
        lines = path.read_text(encoding="utf-8").splitlines()
        header = lines[0].split(",")
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=True))
            if row["outcome"] == "succeeded":
                keys.add(row["key"])
    return keys


def test_a_clean_acme_run_passes_and_matches_postgres_row_for_row(postgres: Postgres, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with acme(postgres, tmp_path / "acme.log") as url:
        result = surge_run(postgres, url, out, 20)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["invariants"] == {"lost": 0, "phantom": 0, "duplicate": 0, "over_cap": 0}
    recorded = payments(postgres)
    assert acknowledged_keys(out) == recorded
    assert summary["totals"]["succeeded"] >= len(recorded) > 100
    assert summary["totals"]["declined"] > 0  # the bills' tail passes acme's limits, as designed
    print("acme clean:", json.dumps({"totals": summary["totals"], "ledger_rows": len(recorded)}))
    for path in out.rglob("*"):  # the database password is in no file of the run folder
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_the_acme_bug_fails_the_run_and_names_the_lost_payments(postgres: Postgres, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with acme(postgres, tmp_path / "acme.log", "--bug-every", "25") as url:
        result = surge_run(postgres, url, out, 8)
    assert result.returncode == 1, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    lost = acknowledged_keys(out) - payments(postgres)
    assert lost
    assert summary["invariants"]["lost"] == len(lost)
    named = next(line for line in result.stdout.splitlines() if line.startswith("lost payments"))
    assert all(key in named for key in sorted(lost)[:20])
    print("acme bug:", json.dumps({"totals": summary["totals"], "invariants": summary["invariants"]}))
