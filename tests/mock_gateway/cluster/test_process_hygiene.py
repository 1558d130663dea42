"""Binding, start-up failures and orphans: what must hold however the cluster ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from mock_gateway.cluster.handle import ClusterProcess
from mock_gateway.errors import ClusterStartError, ConfigError
from tests.mock_gateway.cluster.conftest import StartCluster, assert_all_gone, process_tree
from tests.mock_gateway.cluster.events_file import read_events


def run_cluster_cli(*args: str, timeout_s: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mock_gateway.cluster.serve", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "::"])  # noqa: S104 - asserting it is refused
def test_refuses_a_public_bind_without_the_flag(tmp_path: Path, host: str) -> None:
    result = run_cluster_cli("--host", host, "--replicas", "1", "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 2
    assert "refusing to bind" in result.stderr and "--allow-public-bind" in result.stderr
    assert not (tmp_path / "s").exists()  # refused before anything was created or started


def test_bad_config_is_exit_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[router]\nfall = 0\n", encoding="utf-8")
    result = run_cluster_cli("--config", str(config), "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 2 and "router.fall" in result.stderr
    with pytest.raises(ConfigError, match=r"router\.fall"):
        ClusterProcess.start(config, 1, tmp_path / "s2")


def test_a_replica_that_cannot_start_fails_the_cluster_fast(tmp_path: Path) -> None:
    with pytest.raises(ClusterStartError, match="exited"):
        ClusterProcess.start(None, 1, tmp_path / "s", overrides={"ledger": {"path": "/proc/no/such/dir/l.sqlite"}})


def test_sigterm_stops_every_replica_cleanly(start_cluster: StartCluster) -> None:
    cluster = start_cluster(2)
    tree = process_tree(cluster.pid)
    assert len(tree) == 3
    assert cluster.stop() == 0
    assert_all_gone(tree)
    died = [e for e in read_events(cluster.events_path) if e["kind"] == "process_died"]
    assert sorted(e["replica"] for e in died) == ["r1", "r2"]
    assert all("exit code 0" in e["detail"] for e in died)


def test_sigkill_of_the_router_takes_the_replicas_with_it(start_cluster: StartCluster) -> None:
    cluster = start_cluster(2)
    tree = process_tree(cluster.pid)
    os.kill(cluster.pid, signal.SIGKILL)
    assert_all_gone(tree, timeout_s=3)


def test_cluster_json_is_private_and_complete(start_cluster: StartCluster) -> None:
    cluster = start_cluster(1, admin={"token": "token-from-the-config-0123"})
    assert cluster.admin_token == "token-from-the-config-0123"
    for path in cluster.state_dir.glob("*"):
        if path.is_file() and path.name != "cluster.json" and ".sqlite" not in path.name:
            assert cluster.admin_token not in path.read_text(encoding="utf-8", errors="replace"), path
    # the replica accepts the router's forwarded call: it got the token
    request = urllib.request.Request(  # noqa: S310 - loopback http URL of our own cluster
        cluster.url + "/admin/faults",
        data=b'{"kind": "latency", "latency_ms": 1, "duration_s": 0.1}',
        headers={"Authorization": f"Bearer {cluster.admin_token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
        assert json.loads(response.read())["applied"] == ["r1"]
    path = cluster.state_dir / "cluster.json"
    assert path.stat().st_mode & 0o077 == 0
    state = json.loads(path.read_text(encoding="utf-8"))
    assert set(state) >= {"router", "replicas", "admin_token", "ledger_path", "events_path", "clock"}
    assert state["router"]["pid"] == cluster.pid
    assert set(state["clock"]) == {"start", "speed", "anchor_unix"}
    assert psutil.Process(state["replicas"][0]["pid"]).ppid() == cluster.pid


def test_sigterm_while_starting_stops_at_once(tmp_path: Path) -> None:
    state = tmp_path / "s"
    with subprocess.Popen(
        [sys.executable, "-m", "mock_gateway.cluster.serve", "--replicas", "2", "--state-dir", str(state)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as proc:
        try:
            deadline = time.monotonic() + 15
            while not (state / "replica-r2.log").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            tree = process_tree(proc.pid)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert_all_gone(tree)
    assert not (state / "cluster.json").exists()
