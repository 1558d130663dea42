"""`surge find-capacity` against the embedded cluster with a known cap finds it within 10 %."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.support.procs import surge

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

CAP = 150
BASE = f"""
name = "knee-base"
description = "small bills on one channel, no faults: every attempt is one arrival"
duration_s = 10
seed = 3

[population]
users = 50000
cards_per_user = [1, 1]
bill_fen = {{ median = 10000, p99 = 20000 }}

[[rate]]
at_s = 0
per_s = 10

[arrivals]
process = "even"
pool = 100

[slo]
min_success_ratio = 0.99
max_p99_ms = 500

[client]
timeout_s = 1.0

[gateway.limits]
replica_tps = {CAP}
global_tps = 100000
user_tps = 100
burst_ms = 250   # Locust, router and replica share 2 cores: sends jitter by ~100 ms, the cap is what is sought

[[gateway.channels]]
code = "ICBC"
single_fen = 5000000
card_daily_fen = 50000000
latency_ms = {{ median = 0, p99 = 0 }}
"""


def test_knee_of_a_known_cap(tmp_path: Path) -> None:
    base = tmp_path / "base.toml"
    base.write_text(BASE)
    out = tmp_path / "capacity"
    result = surge("find-capacity", "--scenario-base", str(base), "--out", str(out),
                   "--start-rate", "120", "--growth", "1.4", "--precision", "0.08", "--probe-s", "3", "--warmup-s", "1",
                   "--repeats", "0", "--replicas", "1", timeout_s=230)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("capacity:"))
    found = float(line.split()[1].removesuffix("/s"))
    assert CAP * 0.9 <= found <= CAP * 1.1, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["capacity"]["max_rate_per_s"] == pytest.approx(found, abs=1)
    assert "rate cap" in summary["capacity"]["limited_by"]
    with (out / "steps.csv").open(newline="") as handle:
        steps = list(csv.DictReader(handle))
    assert any(row["passed"] == "False" for row in steps) and any(row["passed"] == "True" for row in steps)
    assert (out / "report.html").is_file()
