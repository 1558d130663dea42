"""Mistakes caught before anything starts: fault targets, options --host would ignore, an unreachable
host, and two runs claiming one folder."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from loadtests.errors import HarnessError, UsageError
from loadtests.orchestration import preflight
from loadtests.orchestration.run_folder import new_run_dir
from loadtests.scenario.files import load_scenario
from loadtests.scenario.parts import Fault
from reports.frames import read_events
from reports.measure import recovery
from runfolder.claim import FolderTaken, claim, claim_new
from runfolder.events import write_events_csv
from runfolder.models import RunMeta
from tests.support.procs import closed_port_url

CONFIG = {"channels": [{"code": "ICBC"}, {"code": "CCB"}]}


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (Fault(at_s=1, action="kill", target="r9"), "'faults.0.target': unknown replica 'r9' for kill"),
        (Fault(at_s=1, action="kill", target="all"), "unknown replica 'all'"),
        (Fault(at_s=1, action="channel_outage", target="CCBX"), "'faults.0.target': unknown channel 'CCBX'"),
        (Fault(at_s=1, action="latency", target="all", channel="BOC"), "'faults.0.channel': unknown channel 'BOC'"),
        (
            Fault(at_s=1, action="settlement_stall", target="all", channel="BOC"),
            "'faults.0.channel': unknown channel 'BOC'",
        ),
        (Fault(at_s=1, action="callback_loss", target="r9"), "'faults.0.target': unknown replica 'r9'"),
    ],
)
def test_a_fault_aimed_at_nothing_is_refused_naming_the_key(fault: Fault, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        preflight.check_faults([fault], CONFIG, replicas=3)
    assert message in str(caught.value) and caught.value.exit_code == 2


def test_faults_aimed_at_what_the_cluster_has_pass() -> None:
    faults = [
        Fault(at_s=1, action="kill", target="primary"),
        Fault(at_s=1, action="pause", target="r3"),
        Fault(at_s=1, action="errors", target="all", ratio=0.1),
        Fault(at_s=1, action="channel_outage", target="CCB"),
        Fault(at_s=1, action="settlement_stall", target="all", channel="CCB", duration_s=5),
        Fault(at_s=1, action="callback_loss", target="primary", ratio=0.05, duration_s=5),
        Fault(at_s=1, action="callback_duplicate", target="r2", ratio=0.5, duration_s=5),
    ]
    preflight.check_faults(faults, CONFIG, replicas=3)


def host_args(**given: object) -> argparse.Namespace:
    return argparse.Namespace(**{"config": None, "replicas": None, **given})


def test_host_refuses_the_embedded_cluster_options_it_would_ignore() -> None:
    with pytest.raises(UsageError, match=r"--config and --replicas .* ignored with --host"):
        preflight.host_conflicts(host_args(config=Path("gw.toml"), replicas=2), load_scenario("due-date-wave"))


def test_host_warns_of_the_gateway_table_and_the_faults_it_cannot_play() -> None:
    warnings = preflight.host_conflicts(host_args(), load_scenario("double11"))
    assert any("[gateway] table (clock" in warning for warning in warnings)
    assert any("1 fault(s) (kill)" in warning and "unknown" in warning for warning in warnings)


def test_faults_skipped_against_a_host_are_logged_when_due_with_the_reason(tmp_path: Path) -> None:
    """The events `surge run --host` writes, read back as the report reads them: not played, recovery unknown."""
    faults = load_scenario("double11").faults
    events = preflight.skipped_fault_events(faults, start_unix=1000.0)
    assert [(e.unix, e.kind, e.target) for e in events] == [(1000.0 + faults[0].at_s, "fault_skipped", "primary")]
    write_events_csv(tmp_path / "events.csv", 1000.0, events)
    meta = RunMeta(scenario="double11", seed=11, started_unix=1000.0, faults=[fault.model_dump() for fault in faults])
    (incident,) = recovery.incidents(meta, read_events(tmp_path / "events.csv"))
    assert incident.not_played == "not played: kill needs the embedded cluster; not played against --host"


def test_an_unreachable_host_is_a_harness_error() -> None:
    url = closed_port_url()
    with pytest.raises(HarnessError, match=f"--host {url} does not answer"):
        preflight.check_reachable(url)


def test_two_runs_into_one_folder_one_wins(tmp_path: Path) -> None:
    """The old check (no meta.json yet?) let both of two simultaneous runs through; the claim is exclusive."""
    target = tmp_path / "out"
    barrier = threading.Barrier(8)
    won: list[Path] = []
    lost: list[str] = []

    def race() -> None:
        barrier.wait()
        try:
            won.append(new_run_dir(str(target), "double11"))
        except UsageError as exc:
            lost.append(str(exc))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert won == [target] and len(lost) == 7
    assert all("claimed by another surge run" in message for message in lost)


def test_a_folder_holding_a_run_is_refused(tmp_path: Path) -> None:
    (tmp_path / "meta.json").write_text("{}", encoding="utf-8")
    with pytest.raises(FolderTaken, match="already holds a run"):
        claim(tmp_path)


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path: Path) -> None:
    """Two web-UI tests started in the same second shared `runs/locust-<second>` and its meta.json."""
    first, second = claim_new(tmp_path, "locust-20261111T000000Z"), claim_new(tmp_path, "locust-20261111T000000Z")
    assert first.name == "locust-20261111T000000Z" and second.name == "locust-20261111T000000Z-2"


def test_a_folder_with_leftovers_is_refused_before_the_run(tmp_path: Path) -> None:
    """A leftover history file was merged into the next run (a false `lost`), a leftover ledger.sqlite read as
    its ledger: a folder that exists and is not empty is a usage error."""
    (tmp_path / "history").mkdir()
    (tmp_path / "history" / "old-run.csv").write_text("payment_id\n", encoding="utf-8")
    with pytest.raises(UsageError, match="is not empty \\(it holds history\\)") as caught:
        new_run_dir(str(tmp_path), "double11")
    assert caught.value.exit_code == 2
    assert not (tmp_path / ".surge-claim").exists()


def test_a_folder_handed_over_by_this_command_is_claimed_once_more(tmp_path: Path) -> None:
    """A study claims each variant folder and writes its scenario.toml there; the variant's run then claims
    it once — and a third claim is refused, as is the handed-over folder for anybody else."""
    folder = tmp_path / "variant"
    claim(folder, hand_over=True)
    (folder / "scenario.toml").write_text("name = 'x'\n", encoding="utf-8")
    assert new_run_dir(str(folder), "x") == folder
    with pytest.raises(UsageError, match="is not empty"):
        new_run_dir(str(folder), "x")


def test_a_metrics_port_in_use_is_exit_2_before_anything_starts(tmp_path: Path) -> None:
    """It was found by the Locust child once the cluster ran: exit 3 and a run folder left behind."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = tmp_path / "run"
        command = [sys.executable, "-m", "loadtests.cli.main", "run", "double11", "--duration", "2"]
        done = subprocess.run(
            [*command, "--metrics-port", str(port), "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"surge run: --metrics-port {port}: Address already in use"
    assert not out.exists()
