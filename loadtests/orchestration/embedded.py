"""The embedded gateway cluster of `surge run` and `surge find-capacity`: config validated before anything
starts (exit 2), the cluster started in its own process (exit 3 when it cannot)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from loadtests.errors import HarnessError, UsageError
from loadtests.orchestration.run_folder import copy_ledger
from mock_gateway.config_sources import load_config
from mock_gateway.errors import ConfigError
from runfolder.events import RunEvent, read_cluster_events
from runfolder.layout import RunFolder, write_json

if TYPE_CHECKING:
    from mock_gateway.cluster.handle import ClusterProcess

KILL_WAIT_S = 3.0  # for the replicas to die after their router (PR_SET_PDEATHSIG is prompt; reaping is not)


def validated_config(config_path: Path | None, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The effective gateway config without secrets, for meta.json; a bad key is a UsageError naming it."""
    if config_path is not None and not config_path.is_file():
        raise UsageError(f"--config {config_path}: no such file")
    try:
        config = load_config(config_path, overrides=overrides or None)
    except ConfigError as exc:
        raise UsageError(f"gateway config: {exc}") from None
    public: dict[str, Any] = config.public_dict()
    return public


async def start_cluster(
    config_path: Path | None, replicas: int, state_dir: Path, overrides: dict[str, Any] | None
) -> ClusterProcess:
    # the cluster's process handle (aiohttp, through the router's own module) loads only for a cluster to start:
    # a command refused at its arguments never pays for it
    from mock_gateway.cluster.handle import ClusterProcess

    try:
        return await asyncio.to_thread(
            ClusterProcess.start, config_path, replicas, state_dir, overrides=overrides or None
        )
    except Exception as exc:  # any failure to boot is the harness's, reported as one line with exit 3
        raise HarnessError(f"the embedded gateway cluster did not start: {exc}") from exc


async def stop_and_collect(cluster: ClusterProcess, run_dir: Path) -> list[RunEvent]:
    """Snapshot the ledger, stop the cluster, keep its events, and strip the admin token from its state file:
    a run folder is uploaded as a CI artifact and must not carry a secret, even a dead cluster's. The cluster is
    stopped and the token stripped even when the copy fails."""
    from mock_gateway.cluster.serve import STATE_FILE

    try:
        copy_ledger(cluster.ledger_path, RunFolder(run_dir).ledger)
    finally:
        try:
            await asyncio.to_thread(cluster.stop)
        finally:
            _strip_token(cluster.state_dir / STATE_FILE)
    return read_cluster_events(cluster.events_path)


def _strip_token(state_file: Path) -> None:
    if state_file.exists():
        state = json.loads(state_file.read_text(encoding="utf-8"))
        state.pop("admin_token", None)
        write_json(state_file, state)


async def kill_and_collect(cluster: ClusterProcess) -> list[RunEvent]:
    """In a hurry (a second Ctrl-C): SIGKILL the cluster, whose replicas die with it (`mock_gateway.lifeline`),
    without the ledger copy or the replicas' graceful stop; its events so far are kept."""
    replicas = []
    for pid in (replica.get("pid") for replica in cluster.refresh().get("replicas", [])):
        with contextlib.suppress(psutil.Error, TypeError):
            replicas.append(psutil.Process(pid))
    cluster.popen.kill()
    await asyncio.to_thread(cluster.popen.wait)
    await asyncio.to_thread(psutil.wait_procs, replicas, timeout=KILL_WAIT_S)  # gone before surge exits
    return read_cluster_events(cluster.events_path)
