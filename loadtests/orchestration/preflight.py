"""Mistakes caught before anything starts: each is exit 2 with one line naming the key or value, or —
for a gateway that does not answer — exit 3 within a second instead of a full-length run of connection errors.

- a fault aimed at a replica or channel the embedded cluster will not have;
- options that `--host` would silently ignore (`--config`, `--replicas`: refused; the scenario's `[gateway]`
  table and faults that need the embedded cluster: one warning line each, and the faults are logged as
  `fault_skipped` so their recovery is reported unknown, never passed);
- an unreachable `--host`, found with one request before the run;
- a `--metrics-port` another process already listens on (the Locust child would refuse it only once the run
  folder exists and the cluster runs).
"""

from __future__ import annotations

import argparse
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from loadtests.errors import HarnessError, UsageError
from loadtests.scenario.cluster_only import EMBEDDED_ACTIONS, PROCESS_ACTIONS, ignored_warnings, skipped_faults
from loadtests.scenario.model import Scenario
from loadtests.scenario.parts import Fault
from runfolder.events import FAULT_SKIPPED, RunEvent

REACH_TIMEOUT_S = 1.0
DEFAULT_REPLICAS = 3  # of the embedded cluster, when --replicas is not given
METRICS_HOST = "127.0.0.1"  # where the generator serves --metrics-port (loadtests/generator/live_metrics.py)


def check_metrics_port(port: int) -> None:
    """UsageError when `port` cannot be bound on the metrics host now: a bind and close, with SO_REUSEADDR
    like the metrics server's own, so a port in TIME_WAIT passes and one with a listener does not."""
    if not port:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((METRICS_HOST, port))
        except OSError as exc:
            raise UsageError(f"--metrics-port {port}: {exc.strerror or exc}") from None


def check_faults(faults: Sequence[Fault], gateway_config: dict[str, Any], replicas: int) -> None:
    """Every fault's replica target and channel exist in the cluster about to start (else the admin API would
    answer 404/400 mid-run and the scenario would not be the one asked for)."""
    names = [f"r{number}" for number in range(1, replicas + 1)]
    channels = [str(channel["code"]) for channel in gateway_config.get("channels") or []]
    for number, fault in enumerate(faults):
        where = f"faults.{number}"
        if fault.action == "channel_outage":
            code = fault.channel or fault.target
            key = "channel" if fault.channel else "target"
            if code not in channels:
                raise UsageError(
                    f"scenario key '{where}.{key}': unknown channel {code!r} (the gateway has {', '.join(channels)})"
                )
            continue
        allowed = ["primary", *names] if fault.action in PROCESS_ACTIONS else ["primary", "all", *names]
        if fault.action in EMBEDDED_ACTIONS and fault.target not in allowed:
            raise UsageError(
                f"scenario key '{where}.target': unknown replica {fault.target!r} for {fault.action} "
                f"(with {replicas} replicas: {', '.join(allowed)})"
            )
        if fault.channel is not None and fault.channel not in channels:
            raise UsageError(
                f"scenario key '{where}.channel': unknown channel {fault.channel!r} "
                f"(the gateway has {', '.join(channels)})"
            )


def host_conflicts(args: argparse.Namespace, scenario: Scenario) -> list[str]:
    """Refuse the options `--host` makes meaningless; return the warnings for what the scenario asks that a
    gateway surge did not start cannot give."""
    given = [name for name in ("config", "replicas") if getattr(args, name, None) is not None]
    if given:
        options = " and ".join(f"--{name}" for name in given)
        raise UsageError(
            f"{options} configure the embedded cluster and would be ignored with --host; drop {options} or --host"
        )
    return ignored_warnings(scenario, "with --host")


def skipped_fault_events(faults: Sequence[Fault], start_unix: float) -> list[RunEvent]:
    """Against --host: one `fault_skipped` event per embedded-cluster fault, at the time it was due, so the report
    says "not played" with the reason and its recovery verdict is unknown (reports.measure.recovery.incidents)."""
    return [
        RunEvent(
            start_unix + fault.at_s,
            "chaos",
            FAULT_SKIPPED,
            fault.target,
            f"{fault.action} needs the embedded cluster; not played against --host",
        )
        for fault in skipped_faults(faults)
    ]


def check_reachable(host: str) -> None:
    """One GET of `/healthz` with a 1 s timeout: any HTTP answer (even 404 from an API without it) proves a
    server is there; a refused or silent connection is exit 3 now, not a run full of connection errors. An https
    host: a TLS server taking the connection (`_check_tls_server`)."""
    if host.startswith("https:"):
        _check_tls_server(host)
        return
    try:
        with urllib.request.urlopen(f"{host}/healthz", timeout=REACH_TIMEOUT_S):  # noqa: S310 - http(s) checked
            return
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HarnessError(f"--host {host} does not answer ({reason}); is the gateway running?") from None


def _check_tls_server(host: str) -> None:
    """An https host is there when a TLS server takes the connection. Whether it trusts us is not asked here:
    a certificate a profile's [tls] gets wrong (expired, from another CA) is the run's to report, attempt by
    attempt (TLS_FAILED, verdict unknown), so this check neither verifies nor offers a certificate."""
    parts = urlsplit(host)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((parts.hostname, parts.port or 443), timeout=REACH_TIMEOUT_S) as sock,
            context.wrap_socket(sock, server_hostname=parts.hostname),
        ):
            return
    except ssl.SSLError:
        return  # a TLS server answered, and refused the handshake
    except OSError as exc:
        raise HarnessError(f"--host {host} does not answer ({exc}); is the gateway running?") from None
