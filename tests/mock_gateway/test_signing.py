"""`[signing] required = true`: a real replica refuses payment requests that are not HMAC-signed over a fresh
timestamp and a nonce it has not seen — 401 problem+json SIGNATURE_INVALID, nothing recorded — and takes the
ones that are. Black-box over HTTP; the key only ever in the replica's environment."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.mock_gateway.conftest import QUIET, REPO, Replica, body, merge

KEY = "gateway-sign-key-0c7e"
ENV = "GATEWAY_TEST_SIGN_KEY"
SIGNING = {"signing": {"required": True, "key_env": ENV, "window_s": 30}}


def post(url: str, payload: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request("POST", "/v1/repayments", body=payload, headers={"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def signed(payload: bytes, *, key: str = KEY, stamp_ms: int | None = None, nonce: str | None = None) -> dict[str, str]:
    stamp = str(int(time.time() * 1000) if stamp_ms is None else stamp_ms)
    nonce = nonce or secrets.token_hex(16)
    message = b"\n".join((b"POST", b"/v1/repayments", stamp.encode(), nonce.encode(), payload))
    signature = base64.b64encode(hmac.new(key.encode(), message, hashlib.sha256).digest()).decode()
    return {"Idempotency-Key": secrets.token_hex(16), "X-Timestamp": stamp, "X-Nonce": nonce, "X-Signature": signature}


def rows(replica: Replica) -> int:
    config = json.loads(replica.config_path.read_text())
    with sqlite3.connect(config["ledger"]["path"]) as conn:
        return int(conn.execute("SELECT count(*) FROM repayments").fetchone()[0])


@pytest.fixture
def replica(start_replica: Callable[..., Replica], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Replica:
    monkeypatch.setenv(ENV, KEY)
    return start_replica({**SIGNING, "ledger": {"path": str(tmp_path / "ledger.sqlite")}})


def test_a_signed_request_is_paid_and_every_unsigned_or_replayed_one_refused(replica: Replica) -> None:
    payload = json.dumps(body(user="u-sign", card="c-sign")).encode()
    status, answer = post(replica.url, payload, signed(payload))
    assert status == 201, answer
    nonce = secrets.token_hex(16)
    stale = int((time.time() - 120) * 1000)
    refusals = {
        "unsigned": {"Idempotency-Key": secrets.token_hex(16)},
        "wrong key": signed(payload, key="not-the-key"),
        "stale timestamp": signed(payload, stamp_ms=stale),
        "future timestamp": signed(payload, stamp_ms=int((time.time() + 120) * 1000)),
        "body changed": {**signed(payload), "X-Signature": signed(payload + b" ")["X-Signature"]},
    }
    for what, headers in refusals.items():
        status, answer = post(replica.url, payload, headers)
        assert (status, answer.get("code")) == (401, "SIGNATURE_INVALID"), what
        assert answer["type"].endswith("signature-invalid") and KEY not in json.dumps(answer)
    assert post(replica.url, payload, signed(payload, nonce=nonce))[0] == 201
    status, answer = post(replica.url, payload, signed(payload, nonce=nonce))  # the same nonce, a new payment
    assert (status, answer["code"]) == (401, "SIGNATURE_INVALID") and "nonce" in answer["detail"]
    assert rows(replica) == 2  # only the two signed, fresh requests were recorded
    assert KEY not in "".join(replica.lines)


def test_signing_without_its_key_in_the_environment_is_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(merge(QUIET, {**SIGNING, "ledger": {"path": str(tmp_path / "l.sqlite")}})))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURGE_") and k != ENV}
    result = subprocess.run(
        [sys.executable, "-m", "mock_gateway", "--config", str(config), "--port", "0"],
        capture_output=True, text=True, timeout=30, cwd=REPO, env=env,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == f"mock_gateway: signing.required needs the key in ${ENV}"
