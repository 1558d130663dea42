"""Recovery detection on hand-made per-second series: detect, fail over, recover, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from reports.frames import RunFrames, read_steps
from reports.measure import recovery
from reports.measure.recovery import Incident
from runfolder.events import EVENT_COLUMNS
from runfolder.history import HISTORY_COLUMNS
from runfolder.models import RunMeta, Slo, Span
from runfolder.outcomes import OUTCOME_CLASSES

SLO = Slo(min_success_ratio=0.99, max_p99_ms=500.0, max_recovery_s=5.0)
STARTED = 1_000.0


def frames_of(
    good: list[int],
    failed: list[int],
    *,
    events: list[tuple[float, str, str, str]] = (),
    replicas: dict[str, list[int]] | None = None,
    history: list[dict[str, Any]] = (),
) -> RunFrames:
    seconds = pd.RangeIndex(0, len(good), name="t")
    windows = pd.DataFrame(
        0,
        index=seconds,
        columns=[
            "offered",
            "sent",
            "late",
            "dropped",
            "amount_fen",
            "plans_followed",
            *(f"n_{c}" for c in OUTCOME_CLASSES),
        ],
    )
    windows["n_succeeded"] = good
    windows["n_error"] = failed
    windows["offered"] = windows["sent"] = [g + f for g, f in zip(good, failed, strict=True)]
    event_frame = pd.DataFrame(
        [(t, STARTED + t, source, kind, target, "") for t, source, kind, target in events], columns=EVENT_COLUMNS
    )
    return RunFrames(
        run_dir=Path(),
        meta=RunMeta(scenario="recovery", seed=0, started_unix=STARTED),
        generator=None,
        windows=windows,
        codes=pd.DataFrame(index=seconds),
        replicas=pd.DataFrame(replicas or {}, index=seconds),
        latency=pd.DataFrame(columns=["t", "kind", "cls", "idx", "count"]),
        history=pd.DataFrame(list(history), columns=HISTORY_COLUMNS),
        events=event_frame,
        ledger=None,
        steps=read_steps(Path("/nonexistent/steps.csv")),
        capacity=None,
        clock=None,
    )


def recover(frames: RunFrames, incidents: list[Incident], p99: list[float] | None = None) -> list[dict[str, Any]]:
    latency = pd.Series(p99 if p99 is not None else [float("nan")] * len(frames.windows), index=frames.windows.index)
    healthy = recovery.healthy_seconds(frames.windows, latency, SLO)
    return recovery.recovery(frames, healthy, incidents, SLO)


def test_an_incident_that_never_hurt_recovers_in_zero() -> None:
    frames = frames_of([100] * 20, [0] * 20)
    (result,) = recover(frames, [Incident("spike", 5.0, 3.0, None)])
    assert result["recover_s"] == 0.0 and result["errors"] == 0 and result["detect_s"] is None


def test_recovery_is_the_start_of_three_healthy_seconds_after_the_damage() -> None:
    good = [100] * 10 + [0, 50, 100, 0, 100, 100, 100, 100, 100, 100]
    failed = [0] * 10 + [100, 50, 0, 100, 0, 0, 0, 0, 0, 0]
    frames = frames_of(
        good, failed, events=[(10.4, "cluster", "check_failed", "r1"), (10.6, "cluster", "replica_down", "r1")]
    )
    (result,) = recover(frames, [Incident("kill primary", 10.2, 0.0, "primary")])
    # 12 is healthy but 13 is not: the streak 14, 15, 16 is the first of three.
    assert result["recover_s"] == 3.8
    assert result["detect_s"] == 0.2
    assert result["errors"] == 250


def test_latency_alone_can_keep_a_second_unhealthy() -> None:
    frames = frames_of([100] * 12, [0] * 12)
    p99 = [50.0] * 4 + [900.0] * 5 + [50.0] * 3
    (result,) = recover(frames, [Incident("latency r1", 3.5, 5.0, "r1")], p99)
    assert result["recover_s"] == 5.5


def test_never_recovered_is_none_and_measured_only() -> None:
    """Measure, not judge: whether it was within the SLO is `reports.judge`'s verdict, never a figure here."""
    frames = frames_of([100] * 5 + [10] * 10, [0] * 5 + [90] * 10)
    (result,) = recover(frames, [Incident("kill primary", 5.0, 0.0, "primary")])
    assert result["recover_s"] is None and "recovered_within_slo" not in result
    assert result["errors"] == 900


def test_an_idle_second_is_healthy_but_a_second_with_load_and_no_answer_is_not() -> None:
    frames = frames_of([0, 0, 100], [0, 0, 0])
    frames.windows.loc[1, "offered"] = 40
    healthy = recovery.healthy_seconds(frames.windows, pd.Series([float("nan")] * 3), SLO)
    assert healthy.tolist() == [True, False, True]


def test_failover_is_the_first_success_from_another_replica() -> None:
    success = {"status": 201, "outcome": "succeeded"}
    history = [
        {**success, "replica": "r1", "done": STARTED + 9.9},
        {**success, "replica": "r1", "done": STARTED + 10.3},  # in flight on the victim: not a failover
        {**success, "replica": "r2", "done": STARTED + 11.25},
    ]
    frames = frames_of([100] * 20, [0] * 20, events=[(10.5, "cluster", "replica_down", "r1")], history=history)
    (result,) = recover(frames, [Incident("kill primary", 10.0, 0.0, "primary")])
    assert result["failover_s"] == 1.25


def test_failover_from_the_replica_series_when_there_is_no_history() -> None:
    replicas = {"r1": [50] * 10 + [0] * 10, "r2": [0] * 12 + [50] * 8}
    frames = frames_of([50] * 20, [0] * 20, replicas=replicas)
    (result,) = recover(frames, [Incident("kill primary", 10.0, 0.0, "primary")])
    assert result["detect_s"] is None  # no router event in this run
    assert result["failover_s"] == 2.0


def test_a_later_fault_is_not_blamed_on_an_earlier_spike() -> None:
    good = [100] * 12 + [0, 0] + [100] * 6
    failed = [0] * 12 + [100, 100] + [0] * 6
    frames = frames_of(good, failed, events=[(12.3, "cluster", "replica_down", "r1")])
    spike, kill = recover(frames, [Incident("spike", 4.0, 4.0, None), Incident("kill r1", 12.0, 0.0, "r1")])
    assert spike["recover_s"] == 0.0 and spike["detect_s"] is None
    assert kill["recover_s"] == 2.0 and kill["detect_s"] == 0.3


def test_incidents_use_the_injection_time_from_events() -> None:
    meta = RunMeta(
        scenario="recovery",
        seed=0,
        started_unix=STARTED,
        faults=[{"at_s": 45, "action": "kill", "target": "primary", "duration_s": 15}],
        spikes=[Span(start_s=30, end_s=32)],
    )
    events = pd.DataFrame([(45.31, 0.0, "chaos", "fault_injected", "primary", "kill")], columns=EVENT_COLUMNS)
    assert recovery.incidents(meta, events) == [
        Incident("spike", 30.0, 2.0, None),
        Incident("kill primary", 45.31, 15.0, "primary", action="kill", hit="primary"),
    ]


def test_a_kill_starts_when_the_cluster_killed_and_owns_the_death_logged_before_the_player_logged_it() -> None:
    """make run: the router logged replica_down at 28.029 s, 1 ms before the fault player's fault_injected at
    28.030 s; the kill row showed detect "—" and the spike before it detect 4.03 s / fail over 4.04 s."""
    meta = RunMeta(
        scenario="recovery",
        seed=0,
        started_unix=STARTED,
        faults=[{"at_s": 28, "action": "kill", "target": "primary", "duration_s": 5}],
        spikes=[Span(start_s=24, end_s=27)],
    )
    events = [
        (28.009, "cluster", "killed", "r1"),
        (28.025, "cluster", "process_died", "r1"),
        (28.029, "cluster", "replica_down", "r1"),
        (28.030, "chaos", "fault_injected", "r1"),
    ]
    success = {"status": 201, "outcome": "succeeded"}
    history = [
        {**success, "replica": "r1", "done": STARTED + 27.5},
        {**success, "replica": "r2", "done": STARTED + 28.1},
    ]
    frames = frames_of([100] * 40, [0] * 40, events=events, history=history, replicas={"r1": [100] * 40})
    found = recovery.incidents(meta, frames.events)
    assert [(incident.name, incident.start_s) for incident in found] == [("spike", 24.0), ("kill primary", 28.009)]
    spike, kill = recover(frames, found)
    assert kill["detect_s"] == 0.02 and kill["failover_s"] == 0.091
    assert spike["detect_s"] is None and spike["failover_s"] is None


def test_a_death_logged_just_before_the_kill_without_the_clusters_record_is_still_the_kills() -> None:
    """Without a `killed` row (an older run folder), the death 1 ms before the kill's row is the kill's, at 0 s;
    a check on another replica in that millisecond stays the spike's."""
    events = [
        (28.020, "cluster", "check_failed", "r2"),
        (28.029, "cluster", "replica_down", "r1"),
        (28.030, "chaos", "fault_injected", "r1"),
    ]
    frames = frames_of([100] * 40, [0] * 40, events=events)
    spike = Incident("spike", 24.0, 3.0, None)
    kill = Incident("kill primary", 28.030, 5.0, "primary", action="kill", hit="r1")
    spike_row, kill_row = recover(frames, [spike, kill])
    assert kill_row["detect_s"] == 0.0
    assert spike_row["detect_s"] == 4.02


def test_a_fault_on_all_replicas_or_a_channel_has_no_failover() -> None:
    replicas = {"r1": [50] * 10 + [0] * 10, "r2": [0] * 12 + [50] * 8}
    frames = frames_of([50] * 20, [0] * 20, replicas=replicas)
    (result,) = recover(frames, [Incident("latency all CCB", 10.0, 5.0, "all")])
    assert result["failover_s"] is None and result["detect_s"] is None


def test_fault_names_carry_their_channel() -> None:
    fault = {"at_s": 5, "action": "latency", "target": "all", "channel": "CCB", "duration_s": 10}
    meta = RunMeta(scenario="recovery", seed=0, started_unix=STARTED, faults=[fault])
    empty = pd.DataFrame(columns=EVENT_COLUMNS)
    assert [incident.name for incident in recovery.incidents(meta, empty)] == ["latency all CCB"]


def test_a_spike_is_absorbed_only_when_its_backlog_is_no_longer_rate_limited() -> None:
    """Every admitted attempt succeeded, but seconds 5-8 still turned away a third of the load with 429s."""
    frames = frames_of([100] * 16, [0] * 16)
    frames.windows["n_rate_limited"] = [0] * 5 + [50, 60, 40, 20] + [1] * 7
    (result,) = recover(frames, [Incident("spike", 5.0, 4.0, None)])
    assert result["recover_s"] == 4.0 and result["errors"] == 0
    assert recovery.healthy_seconds(frames.windows, pd.Series([float("nan")] * 16), SLO).all()


def test_a_steady_per_user_rate_limit_is_not_blamed_on_an_incident() -> None:
    frames = frames_of([100] * 16, [0] * 16)
    frames.windows["n_rate_limited"] = [25] * 16
    (result,) = recover(frames, [Incident("latency CCB", 6.0, 3.0, None)])
    assert result["recover_s"] == 0.0


def test_an_exec_fault_against_a_target_is_detected_by_its_first_failed_attempt() -> None:
    """No router of surge's watches a team's own service: detect is the first failed attempt after the fault,
    and fail over is unknown with the reason, never a bare null."""
    history = [
        {"status": 503, "outcome": "shed", "replica": "", "done": STARTED + 9.5},  # before the fault
        {"status": 201, "outcome": "succeeded", "replica": "", "done": STARTED + 10.1},
        {"status": 0, "outcome": "error", "replica": "", "done": STARTED + 10.34},
        {"status": 502, "outcome": "error", "replica": "", "done": STARTED + 10.9},
    ]
    frames = frames_of([100] * 20, [0] * 20, history=history)
    (result,) = recover(frames, [Incident("exec acme-1", 10.0, 5.0, "acme-1", action="exec")])
    assert result["detect_s"] == 0.34
    assert result["failover_s"] is None
    assert result["why_unknown"] == {"failover_s": "surge cannot see the target's replicas"}


def test_an_exec_fault_that_failed_no_attempt_says_why_detect_is_unknown() -> None:
    frames = frames_of([100] * 20, [0] * 20)
    (result,) = recover(frames, [Incident("exec acme-1", 10.0, 5.0, "acme-1", action="exec")])
    assert result["detect_s"] is None and result["recover_s"] == 0.0
    assert result["why_unknown"]["detect_s"] == "no attempt failed after the fault"


def test_a_spike_whose_gateway_caps_were_not_applied_gets_no_recovery_verdict() -> None:
    """double11 in plain Locust against `surge gateway`: its [gateway.limits] never applied, 0 × 429, and yet
    "recovery_s[spike] 0 s pass"."""
    meta = RunMeta(
        scenario="recovery", seed=0, started_unix=STARTED, spikes=[Span(start_s=5, end_s=8)],
        gateway_ignored=["clock", "limits"],
    )  # fmt: skip
    frames = frames_of([100] * 20, [0] * 20)
    (spike,) = recovery.incidents(meta, frames.events)
    assert spike.not_played is not None and "caps (limits) were not applied" in spike.not_played
    (result,) = recover(frames, [spike])
    assert result["played"] is False and result["recover_s"] is None
    clock_only = meta.model_copy(update={"gateway_ignored": ["clock"]})  # festival618's: no caps of its own
    assert [incident.not_played for incident in recovery.incidents(clock_only, frames.events)] == [None]
