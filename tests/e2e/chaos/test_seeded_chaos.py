"""Seeded chaos through the whole product: `surge run` on the embedded 3-replica cluster while a seeded schedule
kills, pauses, restarts replicas and loses responses; then nothing may be lost, phantom, duplicated or over a
cap, and once the faults are healed the success ratio must come back to the SLO.

A failure prints the seed; `SURGE_CHAOS_SEED=N make chaos` replays the same schedule.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from loadtests.orchestration.chaos_schedule import chaos_schedule
from loadtests.orchestration.scenario_file import write_scenario
from loadtests.scenario.files import load_scenario
from loadtests.scenario.parts import RatePoint
from tests.support.procs import surge
from tests.support.runs import read_csv

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

FAULT_PHASE_S = 40.0
PROGRESS_PHASE_S = 20.0
RATE_PER_S = float(os.environ.get("SURGE_CHAOS_RATE", "120"))  # about 60 % of what the 2-core CI box sustains
SEEDS = [int(os.environ["SURGE_CHAOS_SEED"])] if "SURGE_CHAOS_SEED" in os.environ else [20261111, 618]


@pytest.mark.parametrize("seed", SEEDS)
def test_chaos_loses_nothing_and_recovers(seed: int, tmp_path: Path) -> None:
    duration = FAULT_PHASE_S + PROGRESS_PHASE_S
    faults = chaos_schedule(seed, fault_phase_s=FAULT_PHASE_S, replicas=3)
    base = load_scenario("double11")
    scenario = base.model_copy(
        update={
            "name": f"chaos-{seed}",
            "description": f"seeded chaos, seed {seed}",
            "duration_s": duration,
            "seed": seed,
            "rate": (RatePoint(at_s=0, per_s=RATE_PER_S), RatePoint(at_s=duration, per_s=RATE_PER_S)),
            "faults": tuple(faults),
            "slo": base.slo.model_copy(update={"min_success_ratio": 0.5, "max_p99_ms": 10_000, "max_recovery_s": 30}),
        }
    )
    scenario_path = write_scenario(scenario, tmp_path / "chaos.toml")
    out = tmp_path / "run"
    result = surge("run", str(scenario_path), "--out", str(out), timeout_s=200)
    context = f"seed {seed} (replay: SURGE_CHAOS_SEED={seed} make chaos); run folder {out}\n{result.stderr[-3000:]}"
    # A random fault schedule may miss an SLO (1) or not (0), which is not what this test is about; the harness
    # failing (3) or a usage error (2) would be.
    assert result.returncode in (0, 1), context
    summary = json.loads((out / "summary.json").read_text())
    assert result.returncode == summary["exit_code"], context
    assert summary["invariants"] == {"lost": 0, "phantom": 0, "duplicate": 0, "over_cap": 0}, context
    assert summary["totals"]["succeeded"] > RATE_PER_S * duration * 0.5, context

    injected = [row for row in read_csv(out / "events.csv") if row["kind"] == "fault_injected"]
    assert len(injected) >= len([f for f in faults if f.action != "restart"]) // 2, context

    progress = [row for row in read_csv(out / "timeseries.csv") if FAULT_PHASE_S + 8 <= float(row["t_s"]) < duration]
    answered = sum(int(row["succeeded"]) + int(row["declined"]) for row in progress)
    failed = sum(int(row[name]) for row in progress for name in ("shed", "error", "timeout"))
    assert answered > 0, context
    assert answered / (answered + failed) >= 0.99, context
    attempts = sum(
        summary["totals"][name] for name in ("succeeded", "declined", "rate_limited", "shed", "error", "timeout")
    )
    print(f"chaos seed {seed}: {len(injected)} faults injected, {attempts} attempts, {summary['totals']}, no violation")
