"""`surge run --target` end to end without PostgreSQL: surge's own gateway written as a profile, its SQLite ledger
read through the profile's [ledger] query (stdlib sqlite3 under SQLAlchemy), and a query with the wrong columns
failing the run with one line and exit 3."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.procs import ROOT, SURGE, replica

pytestmark = pytest.mark.e2e
SCENARIO = """
name = "tiny"
duration_s = 3
seed = 9
[population]
users = 50
bill_fen = { median = 100000, p99 = 400000 }
[[rate]]
at_s = 0
per_s = 20
[slo]
max_p99_ms = 2000
"""
GOOD = (
    "SELECT idempotency_key AS key, card_id, user_id, amount_fen, business_date, repayment_id AS payment_id, "
    "channel FROM repayments"
)


def profile(tmp_path: Path, query: str) -> Path:
    text = (ROOT / "examples" / "gateway" / "target.toml").read_text(encoding="utf-8")
    text += (
        f'\n[ledger]\nurl = "sqlite:///{tmp_path / "ledger.sqlite"}"\nquery = "{query}"\n'
        "[ledger.caps]\ncard_daily_fen = 50000000\nuser_daily_fen = 200000000\n"
    )
    path = tmp_path / "target.toml"
    path.write_text(text, encoding="utf-8")
    return path


def surge_run(tmp_path: Path, url: str, target: Path) -> subprocess.CompletedProcess[str]:
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    command = [str(SURGE), "run", str(scenario), "--target", str(target), "--host", url, "--out", str(tmp_path / "run")]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_a_target_run_checks_the_money_invariants_on_the_team_ledger(tmp_path: Path) -> None:
    with replica(tmp_path) as url:
        result = surge_run(tmp_path, url, profile(tmp_path, GOOD))
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["invariants"] == {"lost": 0, "phantom": 0, "duplicate": 0, "over_cap": 0}
    assert summary["totals"]["succeeded"] > 20
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["target"]["name"] == "surge-gateway"
    assert "ledger.sqlite" not in json.dumps(meta)  # the ledger URL is not recorded


def test_a_ledger_query_with_the_wrong_columns_is_one_line_and_exit_3(tmp_path: Path) -> None:
    with replica(tmp_path) as url:
        result = surge_run(tmp_path, url, profile(tmp_path, "SELECT idempotency_key, card_id FROM repayments"))
    assert result.returncode == 3, result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "the ledger query returned columns" in last
    assert "missing key, user_id, amount_fen, business_date" in last


def test_find_capacity_drives_a_target_and_checks_its_ledger(tmp_path: Path) -> None:
    """`surge find-capacity --target`: every probe goes through the profile, and the team's ledger is copied after
    the search, so the money invariants are checked over all the probes' attempts (not left unknown)."""
    base = tmp_path / "tiny.toml"
    base.write_text(SCENARIO, encoding="utf-8")
    out = tmp_path / "capacity"
    target = profile(tmp_path, GOOD)  # its request path is made visible in Locust's statistics of each probe
    target.write_text(target.read_text().replace('path = "/v1/repayments"', 'path = "/v1/repayments?via=profile"'))
    with replica(tmp_path) as url:
        result = subprocess.run(
            [str(SURGE), "find-capacity", "--scenario-base", str(base), "--target", str(target), "--host", url,
             "--out", str(out), "--start-rate", "20", "--max-rate", "50", "--growth", "2", "--probe-s", "1",
             "--warmup-s", "1", "--repeats", "0"],
            capture_output=True, text=True, timeout=150,
        )  # fmt: skip
    assert (out / "summary.json").exists(), result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert result.returncode == summary["exit_code"], result.stdout + result.stderr  # what its verdicts merge to
    assert "rows copied from surge-gateway's ledger" in result.stderr
    assert summary["invariants"] == {"lost": 0, "phantom": 0, "duplicate": 0, "over_cap": 0}
    capacity = json.loads((out / "capacity.json").read_text())
    assert capacity["probes"] >= 2 and capacity["max_rate_per_s"] == 50.0, capacity
    assert summary["totals"]["succeeded"] > 20
    assert json.loads((out / "meta.json").read_text())["target"]["name"] == "surge-gateway"
    for probe in sorted((out / "probes").iterdir()):
        stats = (probe / "locust" / "locust_stats.csv").read_text(encoding="utf-8")
        assert "/v1/repayments?via=profile" in stats, f"{probe.name} was not driven through the profile"
