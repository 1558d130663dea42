"""meta.json's content for a scenario run: what ran, against what, with which versions — written before the load.

The format is `runfolder.models.RunMeta`; this module fills it from a `Scenario`, with the checkout's git commit
(it runs `git`, so it is no part of the pure `scenario` package). Both processes write it: `surge run` and a
plain `locust -f` run's master, so that `surge report` can read any folder a surge locustfile recorded; hence
it sits beside, not inside, orchestration (which the Locust process never imports). Kept free of heavy imports.
"""

from __future__ import annotations

import platform
import secrets
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from loadtests.scenario.model import Scenario
from runfolder.models import Phase, RunMeta, SettlementMeta, Span

PROJECT_ROOT = Path(__file__).resolve().parents[1]
KEY_PREFIX_TAG = "s"  # not a hex digit: a key of another tool or an older run never carries a run's prefix


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("surge", "locust", "aiohttp", "pandas", "plotly", "hdrhistogram"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def git_commit() -> str | None:
    """The commit of the surge checkout that ran, or None when it is not a git checkout."""
    try:
        result = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def new_key_prefix() -> str:
    """A run's idempotency-key prefix (meta.json `key_prefix`): `s` and 8 random hex digits (one in 4 billion to
    meet another run's), so the invariants can keep to the run's own rows of a ledger other runs wrote to."""
    return KEY_PREFIX_TAG + secrets.token_hex(4)


def run_meta(
    scenario: Scenario,
    *,
    scenario_ref: str,
    scale: float,
    started_unix: float,
    host: str,
    workers: int,
    gateway_config: dict[str, Any] | None,
    replicas: int | None,
) -> RunMeta:
    """docs/internals.md §5; `gateway_config` None means the gateway is not ours (no caps to check against)."""
    return RunMeta(
        kind="run",
        scenario=scenario.name,
        description=scenario.description,
        scenario_ref=scenario_ref,
        seed=scenario.seed,
        key_prefix=new_key_prefix(),
        scale=scale,
        duration_s=scenario.duration_s,
        started_unix=started_unix,
        host=host,
        embedded=gateway_config is not None,
        workers=workers,
        replicas=replicas,
        versions=versions(),
        git_commit=git_commit(),
        gateway_config=gateway_config,
        gateway_ignored=[] if gateway_config is not None else sorted(scenario.gateway),
        slo=scenario.slo,
        phases=[Phase(name=n, start_s=s, end_s=e) for n, s, e in scenario.phases()],
        spikes=[Span(start_s=s, end_s=e) for s, e in scenario.spikes()],
        faults=[fault.model_dump() for fault in scenario.faults],
        client_policy=scenario.client.policy,
        rate=[point.model_dump() for point in scenario.rate],
        settlement=settlement_meta(scenario),
    )


def settlement_meta(scenario: Scenario) -> SettlementMeta | None:
    client = scenario.client
    if client.settlement == "none":
        return None
    return SettlementMeta(
        mode=client.settlement,
        settle_timeout_s=client.settle_timeout_s,
        pending_max=client.settle_pending_max,
        callback_fail_ratio=client.callback_fail_ratio,
    )
