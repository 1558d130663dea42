"""Fixtures that start real clusters on loopback and prove, at teardown, that no process was left behind.

Every cluster is started through `ClusterProcess` (the same handle `surge run` uses). The finalizer notes the
cluster's whole process tree *before* stopping it, then checks with psutil that each of those processes is
gone — so a failing test still stops its cluster and still fails loudly if anything leaked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from mock_gateway.cluster.handle import ClusterProcess

CARD_DAILY_FEN = 300_000
FAST_CHANNEL = {
    "code": "ICBC",
    "single_fen": 100_000,
    "card_daily_fen": CARD_DAILY_FEN,
    "concurrency": 64,
    "queue_timeout_ms": 500,
    "latency_ms": {"median": 2, "p99": 8},
}


def overrides(**sections: Any) -> dict[str, Any]:
    """Small, fast gateway config: one quick bank channel, caps high enough not to get in the way. A table
    section is merged over the default; a list (`channels`) replaces it."""
    base: dict[str, Any] = {
        "channels": [FAST_CHANNEL],
        "limits": {"user_tps": 1000, "global_tps": 5000, "replica_tps": 5000},
    }
    for name, values in sections.items():
        base[name] = values if isinstance(values, list) else {**base.get(name, {}), **values}
    return base


def process_tree(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    return []


def assert_all_gone(procs: list[psutil.Process], timeout_s: float = 5.0) -> None:
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    leftovers = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for proc in leftovers:  # clean up for the next test, then fail this one
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    assert not leftovers, f"processes left behind: {[p.pid for p in leftovers]}"


StartCluster = Callable[..., ClusterProcess]


@pytest.fixture
def start_cluster(tmp_path: Path) -> Iterator[StartCluster]:
    """`start_cluster(replicas=3, **config sections)`; all of them stopped and checked at teardown."""
    started: list[tuple[ClusterProcess, list[psutil.Process]]] = []

    def start(replicas: int = 3, **sections: Any) -> ClusterProcess:
        state_dir = tmp_path / f"cluster{len(started)}"
        cluster = ClusterProcess.start(None, replicas, state_dir, overrides=overrides(**sections))
        started.append((cluster, process_tree(cluster.pid)))
        return cluster

    yield start
    for cluster, tree in started:
        tree += [p for p in process_tree(cluster.pid) if p.pid not in {t.pid for t in tree}]
        cluster.stop()
        assert_all_gone(tree)


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcess]:
    """One 3-replica cluster for the tests that do not break it (user_tps 3 for the rate-limit test)."""
    state_dir = tmp_path_factory.mktemp("shared-cluster")
    cluster = ClusterProcess.start(None, 3, state_dir, overrides=overrides(limits={"user_tps": 3}))
    tree = process_tree(cluster.pid)
    try:
        yield cluster
    finally:
        cluster.stop()
        assert_all_gone(tree)
