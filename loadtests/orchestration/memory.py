"""The resident memory of the embedded gateway's processes during a run, into the run folder's memory.csv.

A leak is what a soak exists to find, and it shows in no latency or throughput curve until it is too late: so
`surge run` samples the RSS of the router and of every replica once a second (pids re-read from cluster.json,
since a restarted replica has a new one) and `reports` turns the series into summary.json's `memory`.
"""

from __future__ import annotations

import asyncio
import csv
import time
from pathlib import Path

import psutil

from mock_gateway.cluster.handle import ClusterProcess
from runfolder.layout import MEMORY_COLUMNS

SAMPLE_EVERY_S = 1.0


async def sample_memory(cluster: ClusterProcess, start_unix: float, path: Path) -> None:
    """Append one row per process per second until cancelled; a process that just died is skipped."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(MEMORY_COLUMNS)
        while True:
            for name, pid in _processes(cluster):
                try:
                    rss = psutil.Process(pid).memory_info().rss
                except psutil.Error:
                    continue
                writer.writerow([f"{time.time() - start_unix:.3f}", name, pid, rss])
            handle.flush()
            await asyncio.sleep(SAMPLE_EVERY_S)


def _processes(cluster: ClusterProcess) -> list[tuple[str, int]]:
    try:
        state = cluster.refresh()
    except (OSError, ValueError):  # cluster.json being rewritten: the last known pids
        state = cluster.state
    found = [("router", int(state["router"]["pid"]))]
    found += [(str(replica["name"]), int(replica["pid"])) for replica in state.get("replicas") or []]
    return found
