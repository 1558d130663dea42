"""Workers that come and go in a distributed run (docs/distributed.md): one lost mid-run, one joining late. The
hosts, processes and helpers are test_distributed.py's; a file of its own so that the suite's two runners can
take the distributed runs side by side.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.locust.netns import hosts
from tests.e2e.locust.test_distributed import (
    distributed_run,
    gateway,
    master_argv,
    profile,
    scenario,
    started,
    summary,
    worker_argv,
)
from tests.support.runs import history

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_a_worker_killed_at_10_s_is_named_its_arrivals_counted_dropped_and_the_run_invalid(tmp_path: Path) -> None:
    """SIGKILL of a worker host's processes at t = 10 s of a 30 s run: Locust sees its heartbeats stop, the master
    counts every arrival of its share it never reported sent as dropped (offered = sent + dropped in every
    second), names the worker, the second and the count, and the run is invalid with its invariants unknown."""
    spec = scenario(tmp_path / "spread.toml", duration=30).read_text(encoding="utf-8")
    spec_path = tmp_path / "long.toml"
    spec_path.write_text(spec.replace("per_s = 40", "per_s = 20"), encoding="utf-8")

    def kill_at_10_s(run: Path, worker: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 60
        while not (run / "meta.json").exists():
            assert time.monotonic() < deadline
            time.sleep(0.2)
        t0 = float(json.loads((run / "meta.json").read_text(encoding="utf-8"))["started_unix"])
        time.sleep(max(0.0, t0 + 10.0 - time.time()))
        os.killpg(worker.pid, signal.SIGKILL)

    rc, run, log = distributed_run(tmp_path, spec_path, during=kill_at_10_s, timeout_s=180)
    assert (run / "summary.json").exists(), log
    generator = json.loads((run / "generator.json").read_text(encoding="utf-8"))
    (lost,) = generator["lost_workers"]
    assert 9.0 <= lost["at_s"] <= 11.5, lost
    # its share after t = 10 s: half of 20/s for 20 s, give or take what it sent before it died
    assert 170 <= lost["dropped"] <= 230, lost
    lines = [json.loads(line) for line in (run / "windows.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sum(w["offered"] for w in lines) == 600  # the whole schedule, the lost worker's share included
    assert all(w["offered"] == w["sent"] + w["dropped"] for w in lines), lines
    assert sum(w["dropped"] for w in lines) >= lost["dropped"]
    found = summary(run)
    assert found["valid"] is False and rc == 3, log
    reason = f"{lost['worker']} ({lost['node']}) lost at t = {lost['at_s']:.0f} s: {lost['dropped']} of its arrivals"
    assert any(reason in r for r in found["validity_reasons"]), found["validity_reasons"]
    assert reason.split(" (")[0] in log and "lost at t =" in log
    assert {v["verdict"] for v in found["invariant_verdicts"]} == {"unknown"}


def test_a_worker_started_at_5_s_takes_a_share_of_the_arrivals_from_then_on(tmp_path: Path) -> None:
    """`--hosts 1` starts with one worker; a second one connects at t = 5 s. From a moment shortly after, the two
    split what is left of the schedule: the newcomer's rows all come after it joined, the first worker's share
    narrows, and every arrival is offered once — no arrival lost, none sent twice."""
    # 25 s: a worker process booting on a busy 2-core machine can take seconds to import Locust and connect
    spec = scenario(tmp_path / "spread.toml", duration=25).read_text(encoding="utf-8")
    spec_path = tmp_path / "late.toml"
    spec_path.write_text(spec.replace("per_s = 40", "per_s = 20"), encoding="utf-8")
    with hosts(["master", "gateway", "w1", "w2"]) as net, gateway(net["gateway"], tmp_path / "gateway") as url:
        target = profile(tmp_path / "master" / "target.toml", tmp_path / "gateway" / "ledger.sqlite")
        run = tmp_path / "master" / "run"
        argv = master_argv(net["master"], spec_path, target, url, run)
        argv[argv.index("--hosts") + 1] = "1"
        with started(argv, tmp_path / "master") as master:
            time.sleep(2.0)
            with started(worker_argv(net["w1"], net["master"]), tmp_path / "w1"):
                deadline = time.monotonic() + 60
                while not (run / "meta.json").exists():
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
                t0 = float(json.loads((run / "meta.json").read_text(encoding="utf-8"))["started_unix"])
                time.sleep(max(0.0, t0 + 5.0 - time.time()))
                with started(worker_argv(net["w2"], net["master"]), tmp_path / "w2"):
                    rc = master.wait(timeout=150)
    log = (tmp_path / "master" / "out.log").read_text(errors="replace")
    assert (run / "summary.json").exists(), log
    meta = json.loads((run / "meta.json").read_text(encoding="utf-8"))
    assert [c["worker"] for c in meta["clocks"]] == ["worker-0", "worker-1"], meta["clocks"]
    lines = [json.loads(line) for line in (run / "windows.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sum(w["offered"] for w in lines) == 500  # the whole schedule, once
    assert all(w["offered"] == w["sent"] + w["dropped"] for w in lines), lines
    firsts: dict[str, list[float]] = {}
    for name in ("worker-0", "worker-1"):
        with (run / "history" / f"{name}.csv").open(newline="", encoding="utf-8") as handle:
            firsts[name] = [float(r["intended"]) - t0 for r in csv.DictReader(handle) if r["attempt"] == "1"]
    late = firsts["worker-1"]
    assert late and min(late) >= 5.0, sorted(late)[:5]  # nothing before it joined
    assert 0.3 * 20 * (25 - min(late)) <= len(late) <= 0.7 * 20 * (25 - min(late))  # about half of what was left
    assert sum(1 for t in firsts["worker-0"] if t >= min(late) + 1.0) < 0.7 * 20 * (25 - min(late) - 1.0)
    rows = history(run)
    ids = [r["payment_id"] for r in rows if r["attempt"] == "1"]
    assert len(ids) == len(set(ids)) == sum(w["sent"] for w in lines)  # every arrival sent once, by one worker
    found = summary(run)
    assert found["invariants"] == {"lost": 0, "phantom": 0, "duplicate": 0, "over_cap": 0}, log
    assert rc == found["exit_code"]
