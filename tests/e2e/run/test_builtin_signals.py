"""Every built-in scenario shows what its description promises, end to end through `surge run`.

Each test runs one built-in at a short --duration (the whole shape squeezed, faults and clock with it) and a
small scale, then looks for the scenario's signal in the run folder — not for a pass: a scenario whose run
shows nothing (double11 at a cap its spike never reached) is the defect these tests catch. A run spends more
time starting and stopping its cluster and Locust than loading, and little CPU while it does, so the selected
runs go two at a time, started together when the first test asks for its own.
"""

from __future__ import annotations

import contextlib
import csv
import json
import sqlite3
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from reports import settlement
from reports.frames import read_history
from tests.support.procs import surge
from tests.support.runs import history

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(200)]

# scenario → its options: short, small, and each long enough for its signal (double11's kill must come a whole
# second after its spike starts, or the spike's recovery window holds no second of overload).
RUNS = {
    "double11": ("--scale", "0.25", "--duration", "20"),
    # scale 1.6: squeezed to 16 s a step lasts one second, too short for a queue to build at a bank barely past
    # its two slots; at ~360/s ABC and CCB get a third more calls than their slots serve, so their queues fill to
    # the 200 ms queue timeout within the last step (p99 330-560 ms on a quiet machine, 1.4-2 s beside a busy
    # core) while the first step (96/s) stays at the banks' own p99 (73-180 ms). Scale 1.3 saw 164-266 ms.
    "capacity-step": ("--scale", "1.6", "--duration", "16"),
    "festival618": ("--scale", "0.5", "--duration", "12"),
    "due-date-wave": ("--scale", "0.5", "--duration", "12"),
    "zero-down-installments": ("--duration", "9"),
    "soak": ("--scale", "0.5", "--duration", "12"),
    # half the arrivals, the curve in 30 s: the stall, the kill and the drain keep their places on it
    "settlement-wave": ("--scale", "0.5", "--duration", "30"),
}
AT_ONCE = 2

Run = tuple[dict[str, Any], list[dict[str, float]], Path]
Runs = dict[str, Future[Run]]


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    """The runs of the selected tests of this module, AT_ONCE at a time, by scenario name."""
    wanted = [
        name
        for name in RUNS
        if any(item.path == request.path and _key(name) in item.name for item in request.session.items)
    ]
    folder = tmp_path_factory.mktemp("builtins")
    with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
        yield {name: pool.submit(surge_run, folder, name, *RUNS[name]) for name in wanted}


def _key(scenario: str) -> str:
    return scenario.replace("-", "_")


def surge_run(folder: Path, scenario: str, *options: str) -> Run:
    """summary.json, timeseries.csv as numbers per second, and the folder; the run itself must be valid."""
    out = folder / scenario
    result = surge("run", scenario, *options, "--out", str(out), timeout_s=150)
    assert (out / "summary.json").exists(), result.stdout[-2000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["valid"], summary["validity_reasons"]
    assert result.returncode == summary["exit_code"], result.stdout[-2000:] + result.stderr[-3000:]
    with (out / "timeseries.csv").open(newline="", encoding="utf-8") as handle:
        rows = [{key: float(value or "nan") for key, value in row.items()} for row in csv.DictReader(handle)]
    return summary, rows, out


def between(rows: list[dict[str, float]], start_s: float, end_s: float) -> list[dict[str, float]]:
    return [row for row in rows if start_s <= row["t_s"] < end_s]


def test_double11_spike_is_rate_limited_retried_and_drained_and_the_kill_fails_over(runs: Runs) -> None:
    summary, rows, out = runs["double11"].result()
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert meta["gateway_config"]["limits"]["global_tps"] == 80, "the cap follows --scale"
    [spike] = meta["spikes"]
    in_spike = between(rows, spike["start_s"], spike["end_s"] + 1)
    assert sum(row["rate_limited"] for row in in_spike) > 0.1 * sum(row["sent"] for row in in_spike)
    spike_recovery, kill = summary["recovery"]
    assert spike_recovery["event"] == "spike" and spike_recovery["recover_s"] > 0
    assert kill["event"] == "kill primary" and kill["failover_s"] is not None
    assert summary["invariants"] == {"lost": 0, "phantom": 0, "duplicate": 0, "over_cap": 0}
    paid = [
        (float(row["done"]) - meta["started_unix"], row["business_date"])
        for row in history(out)
        if row["status"] == "201"
    ]
    last_eve = max(t for t, day in paid if day == "2026-11-10")
    first_day = min(t for t, day in paid if day == "2026-11-11")
    assert last_eve < spike["start_s"] + 0.5 and first_day > spike["start_s"] - 0.5, "midnight is the spike's start"
    retried = [row for row in history(out) if int(row["attempt"]) > 1]
    assert any(row["outcome"] == "succeeded" for row in retried), "429s retried with the same key, then paid"


def test_festival618_latency_fault_slows_its_channel_during_the_second_wave(runs: Runs) -> None:
    summary, rows, out = runs["festival618"].result()
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    [fault] = meta["faults"]
    during = between(rows, fault["at_s"] + 0.5, fault["at_s"] + fault["duration_s"])
    before = between(rows, 1, fault["at_s"] - 0.5)
    assert max(row["p99_ms"] for row in during) > 400, "CCB answers 400 ms late"
    assert max(row["p99_ms"] for row in before) < 400
    assert "latency all CCB" in [entry["event"] for entry in summary["recovery"]]
    # the fault is CCB's: the payments on the other channels stay fast while CCB's are 400 ms late
    took: dict[str, list[float]] = {}
    for row in history(out):
        sent = float(row["sent"]) - meta["started_unix"]
        if row["status"] == "201" and fault["at_s"] + 0.5 <= sent < fault["at_s"] + fault["duration_s"] - 0.5:
            took.setdefault(row["channel"], []).append(float(row["done"]) - float(row["sent"]))
    medians = {channel: sorted(times)[len(times) // 2] for channel, times in took.items()}
    assert medians.pop("CCB") >= 0.4 and len(medians) >= 3, medians
    assert max(medians.values()) < 0.2, f"a fault on CCB slowed the other channels: {medians}"


def test_due_date_wave_crosses_daily_resets_and_pays_split_plans_on_later_days(runs: Runs) -> None:
    summary, _, out = runs["due-date-wave"].result()
    assert summary["codes"].get("DAILY_LIMIT_EXCEEDED", 0) > 0, "the big bills meet the daily caps"
    assert summary["plans_followed"] > 0
    with sqlite3.connect(out / "ledger.sqlite") as ledger:
        days = [day for (day,) in ledger.execute("SELECT DISTINCT business_date FROM repayments ORDER BY 1")]
    assert len(days) >= 3, f"several business days in one run: {days}"
    later_parts = {
        row["business_date"] for row in history(out) if int(row["part"]) > 0 and row["outcome"] == "succeeded"
    }
    assert later_parts - {days[0]}, "plan parts paid after a reset"


def test_zero_down_installments_meets_the_per_user_rate_cap(runs: Runs) -> None:
    summary, rows, _ = runs["zero-down-installments"].result()
    plateau = between(rows, 2, 8)
    assert sum(row["rate_limited"] for row in plateau) > 0.02 * sum(row["sent"] for row in plateau)
    assert summary["codes"]["RATE_LIMITED"] == summary["totals"]["rate_limited"]
    assert summary["success_ratio"] >= 0.95, "429s are the cap working, not failures"


def test_capacity_step_latency_climbs_step_by_step_to_a_knee(runs: Runs) -> None:
    summary, rows, out = runs["capacity-step"].result()
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    steps = [phase for phase in meta["phases"] if phase["name"].startswith("steady")]
    first, last = steps[0], steps[-1]
    low = [row["p99_ms"] for row in between(rows, first["start_s"], first["end_s"])]
    high = [row["p99_ms"] for row in between(rows, last["start_s"], last["end_s"] + 1)]
    assert max(high) > summary["slo_thresholds"]["max_p99_ms"] > min(low), (low, high)
    # past the knee calls queue for the banks' slots: the last step's latency is above the first's throughout
    assert sum(high) / len(high) > sum(low) / len(low), (low, high)


def test_soak_watches_the_memory_of_every_gateway_process(runs: Runs) -> None:
    summary, rows, out = runs["soak"].result()
    assert {"router", "r1", "r2", "r3"} <= set(summary["memory"])
    samples = list(csv.DictReader((out / "memory.csv").read_text(encoding="utf-8").splitlines()))
    assert len({row["t_s"] for row in samples if row["process"] == "r1"}) >= 10, "one sample a second"
    primary = summary["memory"]["r1"]
    assert primary["warm_mib"] > 10 and abs(primary["growth"]) < 0.25, primary
    assert min(row["succeeded"] for row in between(rows, 6, 11)) > 0, "the flat part of the curve is served"


def test_settlement_wave_backlog_peaks_and_drains_and_the_killed_replicas_payments_settle(runs: Runs) -> None:
    summary, _, out = runs["settlement-wave"].result()
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    frame = read_history(out / "history")
    accepted = settlement.accepted_payments(frame)
    seconds = int(meta["duration_s"]) + 12
    backlog = settlement.backlog(accepted, meta["started_unix"], seconds).sum(axis=1)
    [spike] = meta["spikes"]
    stall = next(fault for fault in meta["faults"] if fault["action"] == "settlement_stall")
    before = backlog.iloc[: int(spike["start_s"])].max()
    peak = backlog.max()
    assert peak > 5 * max(before, 10) and spike["start_s"] <= backlog.idxmax() <= stall["at_s"] + 10, (before, peak)
    assert backlog.iloc[int(meta["duration_s"]) - 1] <= max(before, 10), "drained before the run ends"
    p99 = settlement.settle_latency_per_second(accepted, meta["started_unix"], seconds)["p99_s"]
    calm = p99.iloc[: int(spike["start_s"])].max()
    worst = p99.iloc[int(spike["start_s"]) : int(stall["at_s"] + stall["duration_s"]) + 8].max()
    after = p99.iloc[int(meta["duration_s"]) - 4 : int(meta["duration_s"])].max()
    assert worst > 2 * calm and after < worst / 2, (calm, worst, after)
    callbacks = summary["settlement"]["callbacks"]
    assert callbacks["retried"] > 0 and callbacks["duplicate"] > 0, callbacks
    kill = next(fault for fault in meta["faults"] if fault["action"] == "kill")
    events = csv.DictReader((out / "events.csv").read_text(encoding="utf-8").splitlines())
    victim = next(event for event in events if event["kind"] == "killed")["target"]
    with contextlib.closing(sqlite3.connect(out / "ledger.sqlite")) as ledger:
        taken = ledger.execute(
            "SELECT count(*) FROM settlements WHERE replica = ? AND settled_by != ? AND status != 'processing'",
            (victim, victim),
        ).fetchone()[0]
        open_rows = ledger.execute("SELECT count(*) FROM settlements WHERE status = 'processing'").fetchone()[0]
    assert kill and taken > 0 and open_rows == 0, (victim, taken, open_rows)
    assert summary["invariants"] == dict.fromkeys(
        ("lost", "phantom", "duplicate", "over_cap", "stuck", "flipped", "double_settled", "callback_mismatch"), 0
    )
    assert summary["settlement"]["accepted"] == len(accepted) > 0
    junit = (out / "junit.xml").read_text(encoding="utf-8")
    assert all(f'name="{name}"' in junit for name in ("stuck", "flipped", "double_settled", "settle_p99_s"))
    page = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="settlement-section"' in page and 'id="settle_backlog"' in page and 'id="settle_latency"' in page
