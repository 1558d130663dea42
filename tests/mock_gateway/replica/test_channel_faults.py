"""A fault on one bank channel touches that channel only, seen over HTTP from outside a real replica process.

festival618 slows CCB by 400 ms; every channel answered 400 ms late because latency and error faults acted on
arrival, before the body (and its channel) was read.
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.mock_gateway.conftest import ADMIN, Replica, body

LATENCY_MS = 400


def call(url: str, method: str = "GET", data: dict[str, Any] | None = None, **headers: str) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310 - a loopback test target
        url,
        method=method,
        data=None if data is None else json.dumps(data).encode(),
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def timed_pay(replica: Replica, key: str, channel: str) -> tuple[int, float]:
    """The status of one payment on `channel` and how long its answer took, in seconds."""
    started = time.monotonic()
    charge = body(user=key, card=key, channel=channel)
    status, _ = call(replica.url + "/v1/repayments", "POST", charge, **{"Idempotency-Key": key})
    return status, time.monotonic() - started


def add_fault(replica: Replica, **spec: Any) -> None:
    status, answer = call(replica.url + "/admin/faults", "POST", spec, **ADMIN)
    assert status == 201, answer


def test_a_latency_fault_on_one_channel_leaves_the_other_channels_fast(start_replica: Any, tmp_path: Path) -> None:
    replica: Replica = start_replica({"ledger": {"path": str(tmp_path / "ledger.sqlite")}})
    add_fault(replica, kind="latency", channel="BOC", latency_ms=LATENCY_MS, duration_s=60)
    slow = [timed_pay(replica, f"boc-{i}", "BOC") for i in range(3)]
    fast = [timed_pay(replica, f"icbc-{i}", "ICBC") for i in range(10)]
    assert all(status == 201 for status, _ in slow + fast), (slow, fast)
    assert min(took for _, took in slow) >= LATENCY_MS / 1000, slow
    # the other channel answers with no fault latency at all: its median far under the fault's 400 ms, even on
    # a loaded machine (a request of this replica takes a few ms)
    assert sorted(took for _, took in fast)[len(fast) // 2] < LATENCY_MS / 1000 / 2, fast


def test_error_and_lost_response_faults_on_one_channel_leave_the_others_served(
    start_replica: Any, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.sqlite"
    replica: Replica = start_replica({"ledger": {"path": str(ledger)}})
    add_fault(replica, kind="errors", channel="BOC", status=502, duration_s=60)
    assert timed_pay(replica, "boc-err", "BOC")[0] == 502
    assert timed_pay(replica, "icbc-ok", "ICBC")[0] == 201
    add_fault(replica, kind="lose_response", channel="ICBC", duration_s=60)
    lost = False
    try:
        timed_pay(replica, "icbc-lost", "ICBC")
    except (ConnectionError, urllib.error.URLError):
        lost = True
    assert lost, "the answer of a commit on the faulty channel is lost"
    call(replica.url + "/admin/faults", "DELETE", **ADMIN)
    add_fault(replica, kind="lose_response", channel="BOC", duration_s=60)
    assert timed_pay(replica, "icbc-kept", "ICBC")[0] == 201, "a commit on another channel is answered"
    with sqlite3.connect(ledger) as conn:
        keys = {key for (key,) in conn.execute("SELECT idempotency_key FROM repayments")}
    assert keys == {"icbc-ok", "icbc-lost", "icbc-kept"}, "the injected error recorded nothing"
