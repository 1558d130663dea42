"""A battery of bad requests (Hypothesis) against a real replica: each one a 4xx problem naming the problem,
never a 5xx, and the ledger unchanged.

Every example starts from a valid request and breaks exactly one thing, so that an accidental 201 is a bug.
"""

from __future__ import annotations

import http.client
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.mock_gateway.conftest import QUIET, REPO, body, merge

VALID = body(user="u-bad", card="c-bad", channel="ICBC", amount=1000)
ID_FIELDS = ("user_id", "card_id", "channel")

junk_values = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=2**63, max_value=2**80),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
bad_ids = st.one_of(
    junk_values,
    st.integers(),
    st.just(""),
    st.text(min_size=65, max_size=300),
    st.tuples(st.text(max_size=10), st.characters(max_codepoint=31), st.text(max_size=10)).map("".join),
)
bad_amounts = st.one_of(
    junk_values.filter(lambda v: not (isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 10**12)),
    st.integers(max_value=0),
    st.integers(min_value=10**12 + 1, max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)


def _not_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return True
    return False


@st.composite
def bad_requests(draw: st.DrawFn) -> tuple[dict[str, str], bytes, int, str]:
    """(headers, raw body, expected status, expected code)."""
    headers = {"Content-Type": "application/json", "Idempotency-Key": draw(st.uuids()).hex}
    payload: dict[str, Any] = dict(VALID)
    kind = draw(
        st.sampled_from(
            [
                "id",
                "channel",
                "amount",
                "missing",
                "extra",
                "not_json",
                "constant",
                "not_object",
                "no_key",
                "bad_key",
                "media",
                "too_big",
            ]
        )
    )
    status, code = 400, "VALIDATION_ERROR"
    raw: bytes | None = None
    if kind == "id":
        payload[draw(st.sampled_from(ID_FIELDS))] = draw(bad_ids)
    elif kind == "channel":
        payload["channel"] = draw(st.text(min_size=1, max_size=64).filter(lambda c: c not in {"ICBC", "BOC"}))
    elif kind == "amount":
        payload["amount_fen"] = draw(bad_amounts)
    elif kind == "missing":
        del payload[draw(st.sampled_from(sorted(payload)))]
    elif kind == "extra":
        payload[draw(st.text(min_size=1, max_size=20).filter(lambda k: k not in VALID))] = draw(junk_values)
    elif kind == "not_json":
        raw = draw(st.one_of(st.text(max_size=200).map(str.encode), st.binary(max_size=200)))
        status, code = 400, "INVALID_JSON"
        if not _not_json(raw):
            raw = b"{" + raw
    elif kind == "constant":
        raw = json.dumps(VALID | {"amount_fen": draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))}).encode()
        raw = raw.replace(b'"NaN"', b"NaN").replace(b'"Infinity"', b"Infinity").replace(b'"-Infinity"', b"-Infinity")
        status, code = 400, "INVALID_JSON"
    elif kind == "not_object":
        raw = json.dumps(
            draw(st.one_of(st.lists(st.integers(), max_size=3), st.integers(), st.text(max_size=5)))
        ).encode()
    elif kind == "no_key":
        if draw(st.booleans()):
            del headers["Idempotency-Key"]
        else:
            headers["Idempotency-Key"] = ""
        code = "MISSING_IDEMPOTENCY_KEY"
    elif kind == "bad_key":
        headers["Idempotency-Key"] = draw(
            st.one_of(
                st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=65, max_size=200),
                st.tuples(
                    st.text(alphabet="abc", min_size=1, max_size=5),
                    # Bytes aiohttp's HTTP parser itself refuses (DEL, other controls) are answered before any
                    # middleware runs, as a plain-text 400; these pass the parser and reach our validation.
                    st.sampled_from([" ", "é", "\xa0", "\xff"]),
                    st.text(alphabet="abc", min_size=1, max_size=5),
                ).map("".join),
            )
        )
    elif kind == "media":
        headers["Content-Type"] = draw(
            st.sampled_from(
                ["text/plain", "application/x-www-form-urlencoded", "application/xml", "multipart/form-data"]
            )
        )
        status, code = 415, "UNSUPPORTED_MEDIA_TYPE"
    else:
        raw = json.dumps(VALID | {"pad": "x" * draw(st.integers(16_384, 1 << 20))}).encode()
        status, code = 413, "PAYLOAD_TOO_LARGE"
    if raw is None:
        raw = json.dumps(payload, allow_nan=False).encode()
    return headers, raw, status, code


@pytest.fixture(scope="module")
def replica_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A module-scoped replica: Hypothesis runs every example against the same process."""
    folder = tmp_path_factory.mktemp("bad-inputs")
    ledger = folder / "ledger.sqlite"
    config = folder / "config.json"
    config.write_text(json.dumps(merge(QUIET, {"ledger": {"path": str(ledger)}})))
    process = subprocess.Popen(
        [sys.executable, "-m", "mock_gateway", "--config", str(config), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on" in line, line
        yield line.rsplit(" ", 1)[1].strip(), ledger
    finally:
        process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def ledger_rows(ledger: Path) -> tuple[int, int]:
    with sqlite3.connect(ledger) as conn:
        return (
            conn.execute("SELECT COUNT(*) FROM repayments").fetchone()[0],
            conn.execute("SELECT COUNT(*) FROM idempotency").fetchone()[0],
        )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(request=bad_requests())
def test_bad_requests_are_4xx_problems_and_store_nothing(
    replica_url: tuple[str, Path], request: tuple[dict[str, str], bytes, int, str]
) -> None:
    url, ledger = replica_url
    headers, raw, status, code = request
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        conn.putrequest("POST", "/v1/repayments", skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(raw)))
        conn.endheaders(raw)
        response = conn.getresponse()
        text = response.read()
    finally:
        conn.close()
    assert response.status == status, (text, headers, raw[:200])
    assert response.getheader("Content-Type", "").startswith("application/problem+json")
    problem = json.loads(text)
    assert problem["code"] == code
    assert problem["status"] == status
    if status == 400 and code == "VALIDATION_ERROR":
        assert problem["errors"] and all(e["field"] and e["message"] for e in problem["errors"])
    assert ledger_rows(ledger) == (0, 0)
