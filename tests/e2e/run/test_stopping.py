"""Stopping `surge run` from outside: Ctrl-C and CI cancellation end it cleanly with the evidence
kept; SIGKILL leaves nothing behind. Real processes: surge, its embedded cluster (two replicas: they start and
stop faster than the default three, and one is enough to pause), Locust.

SIGINT and SIGTERM take the same path through the one skeleton of every run-folder command
(`session.stoppable`): the whole-run test sends SIGINT to `surge run`, the find-capacity test SIGTERM, and the
unit test below checks the two signals' records and exit codes side by side — one full run fewer than sending
both to both.

Every process surge started is a descendant of it: the tests snapshot them (psutil) while the load runs and
check afterwards that none is alive — nor any process in surge's process group, nor any PID the run folder names.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from loadtests.orchestration.stopping import Interrupt
from runfolder.stop import read_stop

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SCENARIO = """
name = "stop-me"
description = "30 s steady, a replica paused at 2 s for 20 s"
duration_s = 30
seed = 3
[population]
users = 300
[[rate]]
at_s = 0
per_s = 10
[[rate]]
at_s = 30
per_s = 10
[[faults]]
at_s = 2
action = "pause"
target = "primary"
duration_s = 20
[arrivals]
pool = 40
[gateway.router]
fall = 100   # 20 s: the router never fences the paused replica: only the fault player's undo can resume it
"""


def _start(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    scenario = tmp_path / "stop.toml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "run"
    return _launch(tmp_path, "run", str(scenario), "--out", str(out), "--replicas", "2"), out


def _launch(tmp_path: Path, *argv: str) -> subprocess.Popen[bytes]:
    """`surge ARGV` in its own session (so a test can kill its whole group), its output in tmp_path/surge.log."""
    with (tmp_path / "surge.log").open("wb") as log:
        return subprocess.Popen([sys.executable, "-m", "loadtests.cli.main", *argv], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)  # fmt: skip


@contextlib.contextmanager
def _reaped(surge: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """Whatever the test asserts, no surge (nor anything in its process group) outlives it."""
    try:
        yield surge
    finally:
        if surge.poll() is None:
            os.killpg(surge.pid, signal.SIGKILL)
            surge.wait()


def _wait_for(surge: subprocess.Popen[bytes], path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert surge.poll() is None and time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def _wait_until_t(surge: subprocess.Popen[bytes], out: Path, t_s: float) -> None:
    deadline = time.monotonic() + 40
    while not (out / "meta.json").exists():
        assert surge.poll() is None, (out.parent / "surge.log").read_text()
        assert time.monotonic() < deadline, "surge did not start the run"
        time.sleep(0.1)
    t0 = json.loads((out / "meta.json").read_text())["started_unix"]
    time.sleep(max(0.0, t0 + t_s - time.time()))


def _descendants(pid: int) -> list[psutil.Process]:
    found = psutil.Process(pid).children(recursive=True)
    assert any("locust" in " ".join(p.cmdline()) for p in found), "Locust is not running"
    assert any("mock_gateway.cluster" in " ".join(p.cmdline()) for p in found), "the cluster is not running"
    return found


def _once_all_started(surge: subprocess.Popen[bytes], out: Path) -> list[psutil.Process]:
    """surge's descendants as soon as Locust and the cluster are both among them."""
    _wait_until_t(surge, out, -math.inf)
    deadline = time.monotonic() + 20
    while True:
        with contextlib.suppress(AssertionError, psutil.NoSuchProcess):
            return _descendants(surge.pid)
        assert surge.poll() is None and time.monotonic() < deadline, "Locust and the cluster did not both start"
        time.sleep(0.1)


def _alive(processes: list[psutil.Process]) -> list[str]:
    found = []
    for process in processes:
        try:
            if _running(process):
                found.append(f"{process.pid} {' '.join(process.cmdline())[:80]}")
        except psutil.NoSuchProcess:
            continue  # it ended while being looked at
    return found


def _running(process: psutil.Process) -> bool:
    """Alive and not a zombie; a process that vanishes while it is being looked at is not running."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _folder_pids(out: Path) -> list[int]:
    state = json.loads((out / "cluster" / "cluster.json").read_text())
    locust = int((out / "locust" / "locust.pid").read_text())
    return [locust, int(state["router"]["pid"])] + [int(r["pid"]) for r in state["replicas"] if r.get("pid")]


def _assert_nothing_left(surge_pid: int, started: list[psutil.Process], out: Path) -> None:
    assert not _alive(started), f"still running: {_alive(started)}"
    group = [p.pid for p in psutil.process_iter() if _pgid(p.pid) == surge_pid]
    assert not group, f"processes left in surge's process group: {group}"
    running = {p.pid for p in psutil.process_iter() if _running(p)}
    for pid in _folder_pids(out):
        assert pid not in running, pid


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


@pytest.mark.parametrize(("sig", "code", "by"), [(signal.SIGINT, 130, "sigint"), (signal.SIGTERM, 143, "sigterm")])
def test_each_signal_has_its_record_and_exit_code(sig: signal.Signals, code: int, by: str, tmp_path: Path) -> None:
    interrupt = Interrupt()
    with interrupt.installed():
        os.kill(os.getpid(), sig)  # handled at once, by this thread, before os.kill returns
    assert interrupt.requested and not interrupt.hurry and interrupt.exit_code == code
    record = interrupt.write(tmp_path, interrupt.at_unix - 2.5)
    assert record.by == by and record.at_s == 2.5 and record.exit_code == code
    assert read_stop(tmp_path) == record


def test_a_signal_stops_the_run_cleanly_and_keeps_the_evidence(tmp_path: Path) -> None:
    sig, code, by = signal.SIGINT, 130, "sigint"
    surge, out = _start(tmp_path)
    with _reaped(surge):
        _wait_until_t(surge, out, 3.0)  # the pause (from 2 s) is played
        started = _descendants(surge.pid)
        os.kill(surge.pid, sig)
        sent = time.monotonic()
        assert surge.wait(timeout=30) == code, (tmp_path / "surge.log").read_text()[-2000:]
        assert time.monotonic() - sent <= 10.0, "surge took longer than 10 s to stop"
    _assert_nothing_left(surge.pid, started, out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["aborted"] is None
    assert summary["stopped"]["by"] == by and 2.0 <= summary["stopped"]["at_s"] <= 5.0, summary["stopped"]
    assert summary["exit_code"] == code
    assert 'data-stopped-by="' + by + '"' in (out / "report.html").read_text()
    totals = summary["totals"]
    assert totals["offered"] == totals["sent"] + totals["dropped"], totals
    timeseries = _rows(out / "timeseries.csv")
    assert len(timeseries) <= math.ceil(summary["stopped"]["at_s"]) + 1, "the charts must end at the stop, not at 30 s"
    # the pause (2 s → 22 s) was undone by the fault player: the replica then shut down on SIGTERM (a stopped
    # process would have ignored it until the supervisor's SIGKILL)
    events = _rows(out / "events.csv")
    paused = [e["target"] for e in events if e["kind"] == "fault_injected" and e["detail"] == "pause"]
    assert paused, "the pause fault was not played"
    assert [e for e in events if e["kind"] == "fault_cleared" and e["target"] == paused[0]], "pause not undone"
    died = [e["detail"] for e in events if e["kind"] == "process_died" and e["target"] == paused[0]]
    assert died and died[0].endswith("exit code 0"), f"the paused replica did not shut down cleanly: {died}"


def test_ctrl_c_during_start_up_says_not_started_and_every_verdict_unknown(tmp_path: Path) -> None:
    """A new user's Ctrl-C 5 s after launch read "interrupted at t = -4 s", "INVALID RUN — the load generator was
    the bottleneck" at 0 % CPU, SLOs FAIL with "—" and "money invariants all 4 held" over no payment."""
    surge, out = _start(tmp_path)
    with _reaped(surge):
        started = _once_all_started(surge, out)  # Locust and the cluster are up; t=0 is seconds away
        t0 = json.loads((out / "meta.json").read_text())["started_unix"]
        assert time.time() < t0 - 1.0, "the test came too late: the load may have begun"
        os.kill(surge.pid, signal.SIGINT)
        assert surge.wait(timeout=60) == 130, (tmp_path / "surge.log").read_text()[-2000:]
    _assert_nothing_left(surge.pid, started, out)
    log = (tmp_path / "surge.log").read_text()
    for misleading in ("interrupted at t =", "INVALID RUN", "held", "FAIL", "pass"):
        assert misleading not in log, (misleading, log[-3000:])
    assert "not started" in log.lower(), log[-3000:]
    if (out / "summary.json").exists():  # Locust recorded its (empty) windows: a report says the same
        summary = json.loads((out / "summary.json").read_text())
        assert summary["not_started"] is True and summary["valid"] is True and summary["exit_code"] == 130
        verdicts = [*summary["slos"], *summary["invariant_verdicts"], *summary["run_verdicts"]]
        assert verdicts and {verdict["verdict"] for verdict in verdicts} == {"unknown"}, verdicts
        page = (out / "report.html").read_text()
        assert 'data-not-started="true"' in page and re.search(r"NOT\s+STARTED", page)
        assert "INVALID RUN" not in page and "interrupted at" not in page and "held" not in page


def test_a_second_ctrl_c_skips_the_grace_and_the_report_but_stops_everything(tmp_path: Path) -> None:
    surge, out = _start(tmp_path)
    with _reaped(surge):
        _wait_until_t(surge, out, 3.0)  # the replica is paused from 2 s: its in-flight attempts hang
        started = _descendants(surge.pid)
        os.kill(surge.pid, signal.SIGINT)
        time.sleep(0.3)
        os.kill(surge.pid, signal.SIGINT)
        assert surge.wait(timeout=30) == 130, (tmp_path / "surge.log").read_text()[-2000:]
    _assert_nothing_left(surge.pid, started, out)
    assert not (out / "report.html").exists(), "the second Ctrl-C skips the report"
    assert "without a report" in (tmp_path / "surge.log").read_text()


def test_sigkill_of_surge_takes_locust_and_the_cluster_with_it(tmp_path: Path) -> None:
    surge, out = _start(tmp_path)
    try:
        started = _once_all_started(surge, out)  # the lifeline holds from Locust's first instruction: no need
        os.kill(surge.pid, signal.SIGKILL)  # to wait for the load itself
        surge.wait(timeout=10)
        deadline = time.monotonic() + 5.0
        while _alive(started) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(started), f"orphans 5 s after SIGKILL: {_alive(started)}"
    finally:
        for process in psutil.Process().children(recursive=True):  # never leave load running after a failure
            if process.pid != surge.pid:
                process.kill()
        if surge.poll() is None:
            os.killpg(surge.pid, signal.SIGKILL)
            surge.wait()


def test_sigterm_during_find_capacity_keeps_the_finished_probes(tmp_path: Path) -> None:
    base = tmp_path / "base.toml"
    base.write_text(SCENARIO.split("[[faults]]")[0] + '[arrivals]\nprocess = "even"\npool = 40\n')
    out = tmp_path / "capacity"
    with _reaped(_launch(tmp_path, "find-capacity", "--scenario-base", str(base), "--out", str(out),
                         "--start-rate", "10", "--probe-s", "1", "--warmup-s", "1", "--repeats", "0",
                         "--replicas", "2")) as surge:  # fmt: skip
        _wait_for(surge, out / "steps.csv", 60)  # the first probe has finished
        time.sleep(1.0)  # into the second probe
        started = psutil.Process(surge.pid).children(recursive=True)
        os.kill(surge.pid, signal.SIGTERM)
        assert surge.wait(timeout=30) == 143, (tmp_path / "surge.log").read_text()[-2000:]
    assert not _alive(started), f"still running: {_alive(started)}"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["stopped"]["by"] == "sigterm"
    assert summary["exit_code"] == 143
    assert summary["capacity"]["limited_by"] == "interrupted" and summary["capacity"]["max_rate_per_s"] is None
    assert len(_rows(out / "steps.csv")) == 1, "the finished probe is kept, the cut one is not"
    assert (out / "report.html").exists()


def test_sigterm_during_a_study_keeps_the_finished_variant_and_exits_143(tmp_path: Path) -> None:
    """A study is several `surge run`s in turn: SIGTERM during the second variant stops it as a run is stopped,
    starts no third, writes the study page as unfinished with both variants, and exits 143 (not 130)."""
    steady = SCENARIO.split("[[faults]]")[0].replace("duration_s = 30", "duration_s = 6")
    steady = steady.replace("at_s = 30", "at_s = 6")
    (tmp_path / "steady.toml").write_text(steady + "[arrivals]\npool = 40\n")
    (tmp_path / "study.toml").write_text(
        'name = "stopped study"\nscenario = "steady.toml"\nreplicas = 2\n'
        + "".join(f'[[variant]]\nname = "v{k}"\nreplicas = 2\n' for k in (1, 2, 3))
    )
    out = tmp_path / "study"
    with _reaped(_launch(tmp_path, "study", str(tmp_path / "study.toml"), "--out", str(out))) as surge:
        _wait_for(surge, out / "v2" / "meta.json", 90)  # the first variant is done, the second has begun
        started = _once_all_started(surge, out / "v2")
        _wait_until_t(surge, out / "v2", 2.0)
        os.kill(surge.pid, signal.SIGTERM)
        assert surge.wait(timeout=30) == 143, (tmp_path / "surge.log").read_text()[-3000:]
    _assert_nothing_left(surge.pid, started, out / "v2")
    study = json.loads((out / "study.json").read_text())
    assert study["interrupted"] is True and study["finished"] is False
    rows = {row["name"]: row for row in study["variants"]}
    assert list(rows) == ["v1", "v2"], "no variant starts after the signal"
    assert rows["v1"]["exit_code"] == json.loads((out / "v1" / "summary.json").read_text())["exit_code"]
    assert rows["v2"]["exit_code"] == 143
    assert json.loads((out / "v2" / "summary.json").read_text())["stopped"]["by"] == "sigterm"
    assert not (out / "v3").exists() or not (out / "v3" / "meta.json").exists()
    assert (out / "study.html").exists()
