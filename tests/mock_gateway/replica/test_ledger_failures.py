"""A replica whose ledger cannot be read or written, as real processes over HTTP.

A lock held by another process makes reads fail: the answer is a retryable 503 problem, never a 500, and the
event loop is never blocked for the busy timeout. Commits that keep failing (here a file-size limit, as on a
full disk) make the replica unready, so the router takes it out; once it can commit again it is ready again.
"""

from __future__ import annotations

import json
import resource
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psutil

from mock_gateway.replica.ledger import UNREADY_AFTER_FAILED_COMMITS
from tests.mock_gateway.conftest import QUIET, REPO, Replica, body, merge

FSIZE_LIMIT = 256 * 1024


def call(url: str, method: str = "GET", payload: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback test target
    if payload is not None:
        request.add_header("Content-Type", "application/json")
        request.add_header("Idempotency-Key", uuid.uuid4().hex)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        assert exc.headers.get("Content-Type", "").startswith("application/problem+json"), exc.headers
        return exc.code, json.loads(exc.read())


def test_reads_that_fail_are_503_not_500(start_replica: Any, tmp_path: Path) -> None:
    """GET by id and the idempotency lookup answer a LedgerError as a retryable 503, never a 500. The tables are
    renamed away under the running replica, so every read of them fails."""
    ledger = tmp_path / "ledger.sqlite"
    replica: Replica = start_replica({"ledger": {"path": str(ledger), "busy_timeout_ms": 300}})
    status, created = call(replica.url + "/v1/repayments", "POST", body(user="u-read"))
    assert status == 201
    with sqlite3.connect(ledger, isolation_level=None) as conn:
        conn.execute("ALTER TABLE repayments RENAME TO repayments_gone")
        conn.execute("ALTER TABLE idempotency RENAME TO idempotency_gone")
    status, problem = call(replica.url + f"/v1/repayments/{created['repayment_id']}")
    assert (status, problem["code"], problem["retryable"]) == (503, "REPLICA_UNAVAILABLE", True)
    status, problem = call(replica.url + "/v1/users/u-read/limits")
    assert (status, problem["code"]) == (503, "REPLICA_UNAVAILABLE")
    status, problem = call(replica.url + "/v1/repayments", "POST", body(user="u-read-2"))
    assert (status, problem["code"]) == (503, "REPLICA_UNAVAILABLE")


def test_a_replica_that_cannot_commit_stops_being_ready_and_comes_back(tmp_path: Path) -> None:
    """/readyz must not stay 200 while every ledger write fails (a full disk, here `ulimit -f`)."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(merge(QUIET, {"ledger": {"path": str(tmp_path / "ledger.sqlite")}})))

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, resource.RLIM_INFINITY))

    process = subprocess.Popen(
        [sys.executable, "-m", "mock_gateway", "--config", str(config), "--port", "0", "--name", "full"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, preexec_fn=limit_file_size,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on" in line, line
        url = line.split("listening on ", 1)[1].strip()
        failures = 0
        for i in range(3000):
            status, answer = call(url + "/v1/repayments", "POST", body(user=f"u{i}", card=f"c{i}", amount=100))
            if status == 201:
                assert failures == 0, "a commit succeeded after failures began"
                continue
            assert (status, answer["code"]) == (503, "REPLICA_UNAVAILABLE"), answer
            failures += 1
            if failures == UNREADY_AFTER_FAILED_COMMITS:
                break
        assert failures == UNREADY_AFTER_FAILED_COMMITS, "the file-size limit was never reached"
        status, answer = call(url + "/readyz")
        assert (status, answer["code"]) == (503, "REPLICA_UNAVAILABLE")
        assert "ledger commits failed" in answer["detail"]
        psutil.Process(process.pid).rlimit(psutil.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        deadline = time.monotonic() + 10
        while call(url + "/readyz")[0] != 200:
            assert time.monotonic() < deadline, "the replica never became ready again"
            time.sleep(0.1)
        assert call(url + "/v1/repayments", "POST", body(user="u-after", card="c-after"))[0] == 201
    finally:
        process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
