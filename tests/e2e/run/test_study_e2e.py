"""`surge study` end to end on a two-variant study of a few seconds: both run folders, study.json's fields, the
worst exit code, and the point of a study — on the same seed, paying the suggested plan completes more bills
than giving up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runfolder.verdict import worst_exit
from tests.support.procs import surge

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(170)]

# Bills around the single-payment limit: about half are declined whole, and their plans fit today's card cap,
# so the follow-plan clients can finish them within the run while the give-up clients cannot.
SCENARIO = """
name = "plan-or-give-up"
duration_s = 6
seed = 5

[population]
users = 300
cards_per_user = [1, 1]
bill_fen = { median = 1000000, p99 = 3000000 }

[[rate]]
at_s = 0
per_s = 8
[[rate]]
at_s = 6
per_s = 8

[arrivals]
pool = 40

[slo]
min_success_ratio = 0.9
max_p99_ms = 5000
max_recovery_s = 30

[gateway.limits]
user_tps = 1000
replica_tps = 1000

[[gateway.channels]]
code = "ICBC"
single_fen = 1000000
card_daily_fen = 100000000
latency_ms = { median = 0, p99 = 0 }
"""

STUDY = """
name = "plans <b>help</b>"
scenario = "plan.toml"
replicas = 1
[[variant]]
name = "give up"
client = { policy = "give-up" }
[[variant]]
name = "follow <plan>"
client = { policy = "follow-plan" }
"""

FIELDS = {
    "name",
    "run_dir",
    "exit_code",
    "valid",
    "payments",
    "completed_ratio",
    "amount_repaid_fen",
    "success_ratio",
    "declined",
    "rate_limited",
    "shed",
    "error",
    "timeout",
    "p99_ms",
    "max_recovery_s",
    "invariants",
}


def test_a_two_variant_study_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "plan.toml").write_text(SCENARIO, encoding="utf-8")
    (tmp_path / "study.toml").write_text(STUDY, encoding="utf-8")
    out = tmp_path / "out"
    result = surge("study", str(tmp_path / "study.toml"), "--out", str(out), timeout_s=160, cwd=tmp_path)
    study = json.loads((out / "study.json").read_text(encoding="utf-8"))
    codes = [variant["exit_code"] for variant in study["variants"]]
    assert result.returncode == worst_exit(codes), result.stderr[-2000:]
    assert study["study"] == "plans <b>help</b>" and study["scenario"] == "plan-or-give-up"
    assert study["finished"] is True
    by_name = {variant["name"]: variant for variant in study["variants"]}
    assert list(by_name) == ["give up", "follow <plan>"]
    for name, variant in by_name.items():
        assert variant.keys() >= FIELDS
        run_dir = out / name
        assert variant["run_dir"] == str(run_dir)
        for file in ("summary.json", "report.html", "ledger.sqlite", "timeseries.csv", "events.csv", "junit.xml"):
            assert (run_dir / file).is_file(), f"{name}/{file}"
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
        assert summary["seed"] == 5 and variant["exit_code"] == summary["exit_code"]
        assert set(variant["invariants"]) == {"lost", "phantom", "duplicate", "over_cap"}
    give_up, follow = by_name["give up"], by_name["follow <plan>"]
    assert give_up["payments"] == follow["payments"] > 0, "the same seed offers the same bills"
    assert give_up["declined"] > 0, "the scenario must decline bills for the comparison to mean anything"
    assert follow["completed_ratio"] > give_up["completed_ratio"]
    page = (out / "study.html").read_text(encoding="utf-8")
    assert "follow &lt;plan&gt;" in page and "<plan>" not in page and "<b>help</b>" not in page
