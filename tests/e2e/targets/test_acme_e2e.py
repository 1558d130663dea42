"""End to end against examples/acme on a real PostgreSQL: surge's counts equal the rows the ledger holds, and
the acme bug (acknowledge, then roll back) is found and named by key. Real processes only."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from tests.support.postgres import PASSWORD, Postgres
from tests.support.procs import ROOT, SURGE, free_port, wait_ready
from tests.support.runs import history

pytestmark = pytest.mark.e2e
ACME = ROOT / "examples" / "acme"
TOKEN = "acme-token-9d3e77"


@contextmanager
def acme(postgres: Postgres, log: Path, *extra: str) -> Iterator[str]:
    """acme-pay on a free port over an emptied payments table; its base URL."""
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS payments")
    port = free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                str(ACME / "server.py"),
                "--dsn",
                postgres.dsn,
                "--port",
                str(port),
                "--token",
                TOKEN,
                *extra,
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/healthz", process=process, log=log)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def surge_run(
    postgres: Postgres, url: str, out: Path, duration_s: float, scenario: Path = ACME / "scenario.toml"
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ACME_DB_PASSWORD": postgres.password,
        "ACME_DB_PORT": str(postgres.port),
        "ACME_TOKEN": TOKEN,
    }
    command = [str(SURGE), "run", str(scenario), "--target", str(ACME / "target.toml"),
               "--host", url, "--duration", str(duration_s), "--out", str(out)]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=duration_s + 120, cwd=ROOT)


def payments(postgres: Postgres) -> set[str]:
    with psycopg.connect(postgres.dsn) as conn:
        return {row[0] for row in conn.execute("SELECT req_no FROM payments")}


def acknowledged_keys(out: Path) -> set[str]:
    return {row["key"] for row in history(out) if row["outcome"] == "succeeded"}


def test_a_clean_acme_run_passes_and_matches_postgres_row_for_row(postgres: Postgres, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with acme(postgres, tmp_path / "acme.log", "--tps", "45") as url:
        result = surge_run(postgres, url, out, 20)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["invariants"] == {"lost": 0, "phantom": 0, "duplicate": 0, "over_cap": 0}
    recorded = payments(postgres)
    assert acknowledged_keys(out) == recorded  # surge's count is PostgreSQL's, key for key
    totals = summary["totals"]
    assert totals["declined"] > 0  # the bills' tail passes acme's limits, as designed
    assert totals["rate_limited"] > 0  # the spike passes --tps 45
    print("acme clean:", json.dumps({"totals": totals, "ledger_rows": len(recorded)}))

    rows = history(out)
    by_key: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_key.setdefault(row["key"], []).append(row)
    retried = [attempts for attempts in by_key.values() if len(attempts) > 1]
    assert retried
    for attempts in retried:  # a retry reuses the key (X-Request-Id) and waits out Retry-After: 1
        attempts.sort(key=lambda row: int(row["attempt"]))
        assert len({row["payment_id"] for row in attempts}) == 1
        for before, after in itertools.pairwise(attempts):
            if before["outcome"] == "rate_limited":
                assert float(after["sent"]) - float(before["done"]) >= 0.99
    cards_per_payment: dict[str, set[str]] = {}
    for row in rows:
        cards_per_payment.setdefault(row["payment_id"], set()).add(row["card_id"])
    assert any(len(cards) > 1 for cards in cards_per_payment.values())  # switch-card after a decline

    for path in out.rglob("*"):  # neither the database password nor the header token is in any file
        if path.is_file():
            content = path.read_bytes()
            assert PASSWORD.encode() not in content, path
            assert TOKEN.encode() not in content, path


def test_the_acme_bug_fails_the_run_and_names_the_lost_payments(postgres: Postgres, tmp_path: Path) -> None:
    scenario = tmp_path / "follow-plan.toml"
    text = (ACME / "scenario.toml").read_text(encoding="utf-8")
    scenario.write_text(text.replace('policy = "switch-card"', 'policy = "follow-plan"'), encoding="utf-8")
    out = tmp_path / "run"
    with acme(postgres, tmp_path / "acme.log", "--bug-every", "25") as url:
        result = surge_run(postgres, url, out, 8, scenario)
    assert result.returncode == 1, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    lost = acknowledged_keys(out) - payments(postgres)
    assert lost
    assert summary["invariants"]["lost"] == len(lost)
    named = next(line for line in result.stdout.splitlines() if line.startswith("lost payments"))
    assert all(key in named for key in sorted(lost)[:20])
    assert "offers no suggested plan" in result.stdout
    assert 'id="no-plan"' in (out / "report.html").read_text(encoding="utf-8")
    verify = subprocess.run([str(SURGE), "verify", str(out), "--json"], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 1  # offline, from the run folder's ledger.sqlite copy
    assert {item["key"] for item in json.loads(verify.stdout)["violations"]["lost"]} == lost
    print("acme bug:", json.dumps({"totals": summary["totals"], "invariants": summary["invariants"]}))
