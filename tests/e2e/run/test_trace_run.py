"""`surge run` of a trace-driven scenario with two generator processes and a fault: every run second offers exactly
the compressed trace's count, the phases are the trace's own clock, and no identity of the trace reaches the run
folder in clear."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest

from loadtests.scenario.files import load_scenario
from tests.support.procs import surge

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

SCENARIO = """
name = "replay"
seed = 5

[arrivals]
process = "trace"
trace = "day.csv"
window = ["2025-06-18T12:00:00+08:00", "2025-06-18T12:02:00+08:00"]
compress = 24
pool = 100

[[faults]]
at_s = 2
action = "latency"
target = "all"
duration_s = 2
latency_ms = 30

[slo]
max_p99_ms = 3000
min_success_ratio = 0.5
"""


def test_a_trace_replayed_by_two_processes(tmp_path: Path) -> None:
    rng = random.Random(2)
    start = pd.Timestamp("2025-06-18T11:59:00+08:00")
    phones = [f"139{n:08d}" for n in range(400)]
    rows = sorted(rng.uniform(0, 240) for _ in range(500))  # from a minute before the window to one after
    frame = pd.DataFrame({
        "ts": [(start + pd.Timedelta(seconds=s)).isoformat() for s in rows],
        "amount_fen": [rng.randint(100, 200000) for _ in rows],
        "user_id": [rng.choice(phones) for _ in rows],
        "channel": [rng.choice(["ICBC", "CCB"]) for _ in rows],
    })  # fmt: skip
    frame.to_csv(tmp_path / "day.csv", index=False)
    scenario = tmp_path / "replay.toml"
    scenario.write_text(SCENARIO)
    expected = load_scenario(str(scenario)).replay().counts_per_second().tolist()  # type: ignore[union-attr]
    assert len(expected) == 5 and sum(expected) > 150  # the window: 2 minutes in 5 s

    out = tmp_path / "out"
    result = surge("run", str(scenario), "--out", str(out), "--workers", "2", timeout_s=140)
    assert (out / "summary.json").exists(), result.stderr[-2000:]
    assert result.returncode == json.loads((out / "summary.json").read_text())["exit_code"], result.stderr[-2000:]
    windows = [json.loads(line) for line in (out / "windows.jsonl").read_text().splitlines()]
    offered = {w["t"]: w["offered"] for w in windows}
    assert [offered.get(t, 0) for t in range(5)] == expected  # exact, second by second, across two processes
    assert sum(w["offered"] for w in windows) == sum(expected)
    meta = json.loads((out / "meta.json").read_text())
    assert [p["name"] for p in meta["phases"]] == ["trace-12:00", "trace-12:01"]
    events = (out / "events.csv").read_text()
    assert "fault_injected" in events
    history = "".join(p.read_text() for p in (out / "history").glob("*.csv"))
    assert history.count("\n") > 100
    folder = history + "".join(p.read_text(errors="replace") for p in out.glob("*.json*"))
    assert not any(phone in folder for phone in phones)
    channels = pd.concat([pd.read_csv(p) for p in (out / "history").glob("*.csv")])["channel"]
    assert set(channels) <= {"ICBC", "CCB"}
