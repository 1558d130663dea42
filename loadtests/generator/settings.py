"""What the leader (Locust's master, or the lone process) decides at test start: the run's RunSettings.

Everything a worker would otherwise look up is read here once and sent in the settings — the channels cards
are drawn on, the idempotency-key prefix, the gateway's anchored clock — so that a worker on another host
needs no run folder. A plain `locust -f` run (no `surge run` before it) gets its folder and meta.json here too,
so that `surge report` can analyse it.
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from errortext.console_text import one_line
from loadtests.channels import ChannelsUnavailable, default_channels, served_channels
from loadtests.generator.arrivals import RateCurve
from loadtests.generator.driver import drain_s
from loadtests.generator.options import numbers, profile_of
from loadtests.generator.recording.protocol import RunSettings
from loadtests.meta import run_meta
from loadtests.scenario.model import Scenario
from loadtests.scenario.profile import target_meta
from runfolder.claim import claim_new
from runfolder.clock import ClusterClock, read_cluster_clock
from runfolder.layout import RunFolder, RunFolderError, write_json
from runfolder.models import read_meta

START_LEAD_S = 0.5  # t=0 this long after the test starts when surge run did not fix it, per worker process too
log = logging.getLogger("surge")


def run_settings(options: Any, scenario: Scenario, host: str, workers: int) -> RunSettings:
    """The settings of the test starting now, with `workers` processes generating besides this one."""
    t0 = options.surge_start_unix or time.time() + START_LEAD_S * (1 + workers)
    if t0 < time.time():
        log.warning("surge: --surge-start-unix is %.1f s in the past; early arrivals will count late", time.time() - t0)
    # each test started from the web UI gets its own folder, even two in the same second (runfolder.claim)
    out = options.surge_out or str(claim_new(Path("runs"), f"locust-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"))
    _ensure_meta(Path(out), scenario, options, host, t0, workers)
    scale, duration_s = numbers(options)
    return RunSettings(
        scenario_ref=options.scenario,
        scale=scale,
        duration_s=duration_s,
        out_dir=out,
        t0=t0,
        hard_stop=t0 + scenario.duration_s + drain_s(scenario),
        late_ms=scenario.arrivals.late_ms,
        expected_offered=RateCurve(scenario.breakpoints()).total,
        channels=_channels(scenario, Path(out), host, targeted=bool(options.target)),
        target=options.target,
        abort=not options.surge_no_abort,
        trace_salt=secrets.token_hex(16),
        key_prefix=_key_prefix(Path(out)),
        clock=cluster_clock(scenario, Path(out)).model_dump(mode="json"),
        host=host,
        max_clock_offset_s=options.surge_max_clock_offset,
    )


def cluster_clock(scenario: Scenario, out: Path) -> ClusterClock:
    """The cluster's anchored clock from cluster.json (surge run puts it in the run folder), else real time."""
    clock = read_cluster_clock(out)
    if clock is not None:
        return clock
    if scenario.gateway.get("clock", {}).get("speed", 1.0) != 1.0:
        log.warning("surge: no cluster.json under %s; plan parts are timed as if the gateway ran on real time", out)
    return ClusterClock.wall()


def _ensure_meta(out: Path, scenario: Scenario, options: Any, host: str, t0: float, workers: int) -> None:
    """`surge run` writes meta.json itself; a plain `locust -f` run (a distributed master, the web UI) gets one
    here, so that `surge report` can analyse its folder too. No gateway config: the gateway is not ours."""
    path = RunFolder(out).meta
    if path.exists():
        return
    out.mkdir(parents=True, exist_ok=True)
    meta = run_meta(
        scenario,
        scenario_ref=options.scenario,
        scale=numbers(options)[0],
        started_unix=t0,
        host=host,
        workers=max(1, workers),
        gateway_config=None,
        replicas=None,
    )
    if options.target:
        profile = profile_of(options.target, host or None)
        meta = meta.model_copy(update={"target": target_meta(profile, options.target, default_channels(scenario))})
    write_json(path, meta)


def _channels(scenario: Scenario, out: Path, host: str, *, targeted: bool) -> list[str]:
    """The bank codes cards are drawn on, read once at test start: the embedded cluster's effective config
    (meta.json); else what a §3 gateway serves at GET /v1/channels; else, with a warning, the defaults."""
    try:
        config = read_meta(out).gateway_config or {}
    except RunFolderError:
        config = {}
    codes = [str(channel["code"]) for channel in config.get("channels", [])]
    if codes:
        return codes
    if not targeted and host:
        try:
            return served_channels(host)
        except ChannelsUnavailable as exc:
            defaults = default_channels(scenario)
            shown = ", ".join(defaults)
            log.warning("surge: warning: %s; drawing cards on the default channels %s", one_line(exc), shown)
            return defaults
    return default_channels(scenario)


def _key_prefix(out: Path) -> str:
    """The run's idempotency-key prefix from meta.json (every writer of meta.json sets one), else none."""
    try:
        return read_meta(out).key_prefix or ""
    except RunFolderError:
        return ""
