"""acme-pay's asynchronous mode on a real PostgreSQL, watched by its signed callback through
examples/acme/target-async.toml: the clean run has every settlement invariant 0; with `--async-bug-every`
(a retried bank call settles a payment twice) surge counts exactly the payments PostgreSQL settled twice and
names them. Real processes only."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.e2e.targets.test_acme_e2e import ACME, ROOT, SURGE, TOKEN, acme
from tests.support.postgres import Postgres
from tests.support.runs import history

pytestmark = pytest.mark.e2e
NOTIFY_SECRET = "acme-notify-5c1e"
SETTLEMENT = ("stuck", "flipped", "double_settled", "callback_mismatch")


def async_run(postgres: Postgres, url: str, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ACME_DB_PASSWORD": postgres.password, "ACME_DB_PORT": str(postgres.port),
           "ACME_TOKEN": TOKEN, "ACME_NOTIFY_SECRET": NOTIFY_SECRET}  # fmt: skip
    command = [str(SURGE), "run", str(ACME / "scenario-async.toml"), "--target", str(ACME / "target-async.toml"),
               "--host", url, "--duration", "8", "--out", str(out)]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=150, cwd=ROOT)


def settled_twice(postgres: Postgres) -> set[str]:
    with psycopg.connect(postgres.dsn) as conn:
        rows = conn.execute(
            "SELECT p.req_no FROM settlements s JOIN payments p ON p.pay_no = s.pay_no "
            "GROUP BY p.req_no HAVING count(*) > 1"
        )
        return {row[0] for row in rows}


def reversed_after_callback(postgres: Postgres) -> set[str]:
    with psycopg.connect(postgres.dsn) as conn:
        return {row[0] for row in conn.execute("SELECT req_no FROM payments WHERE state = 'FAILED'")}


BUGS = {"clean": (), "settled-twice": ("--async-bug-every", "15"), "reversed": ("--async-reversal-every", "10")}
EXAMPLES_KEPT = 20  # summary.json names up to 20 violations of each kind


@pytest.mark.parametrize("bug", list(BUGS))
def test_acme_async_settlements_are_checked_and_each_settlement_defect_is_counted_and_named(
    postgres: Postgres, tmp_path: Path, bug: str
) -> None:
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS settlements")
    out = tmp_path / "run"
    extra = ("--async", "--settle-ms", "300", *BUGS[bug])
    env_before = os.environ.get("ACME_NOTIFY_SECRET")
    os.environ["ACME_NOTIFY_SECRET"] = NOTIFY_SECRET  # acme signs its callbacks with it
    try:
        with acme(postgres, tmp_path / "acme.log", *extra) as url:
            result = async_run(postgres, url, out)
    finally:
        if env_before is None:
            os.environ.pop("ACME_NOTIFY_SECRET", None)
        else:
            os.environ["ACME_NOTIFY_SECRET"] = env_before
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    twice, failed = settled_twice(postgres), reversed_after_callback(postgres)
    rows = [row for row in history(out) if row["settlement"]]
    assert rows and all(row["settlement"] == "succeeded" and row["callbacks"] != "0" for row in rows), result.stdout
    counts = summary["invariants"]
    assert counts["stuck"] == 0, result.stdout
    if bug == "clean":
        assert twice == set() == failed, result.stdout
        assert {name: counts[name] for name in SETTLEMENT} == dict.fromkeys(SETTLEMENT, 0), result.stdout
        assert counts["lost"] == 0, result.stdout
        return
    assert result.returncode == 1, result.stdout + result.stderr
    if bug == "reversed":
        # told PAID by the callback, FAILED in the ledger: the state changed after the client learned it, and the
        # callback disagrees with the ledger — each counted once per payment PostgreSQL reversed, and named
        assert twice == set() and len(failed) >= 3, (twice, failed)
        assert counts["double_settled"] == 0 and counts["flipped"] == counts["callback_mismatch"] == len(failed)
        for name in ("flipped", "callback_mismatch"):
            named = {example["key"] for example in summary["invariant_examples"][name]}
            assert named <= failed and len(named) == min(len(failed), EXAMPLES_KEPT), name
        return
    assert counts["flipped"] == counts["callback_mismatch"] == 0, result.stdout
    assert len(twice) >= 3 and counts["double_settled"] == len(twice), (counts, len(twice))
    named = {example["key"] for example in summary["invariant_examples"]["double_settled"]}
    assert named == twice, "surge names exactly the payments PostgreSQL settled twice"
    page = (out / "report.html").read_text(encoding="utf-8")
    assert all(key in page for key in twice)
