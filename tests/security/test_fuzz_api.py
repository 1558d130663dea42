"""Hypothesis throws bad input at the gateway — through the router and at a lone replica — and every answer must
be a 4xx problem+json, with the ledger unchanged and the process alive (no input ever gets a 500)."""

from __future__ import annotations

import http.client
import json
import sqlite3
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.security.conftest import Target

VALID = {"user_id": "u-fuzz", "card_id": "c-fuzz", "channel": "ICBC", "amount_fen": 100}

BAD_AMOUNTS = st.one_of(
    st.sampled_from([0, -1, -(2**63), 2**63, 2**64 + 5, 10**30, True, False, None, "100", [], {}, 1.5, 100.0]),
    st.integers(max_value=0),
    st.integers(min_value=2**63),
    st.floats(allow_nan=True, allow_infinity=True),
)
CONTROL = st.sampled_from(["\x00", "\n", "\r", "\t", "\x1b", "\x7f"])
BAD_IDS = st.one_of(
    st.just(""),
    st.text(min_size=65, max_size=300).filter(lambda s: len(s) >= 65),
    st.builds(lambda a, c, b: a + c + b, st.text(max_size=10), CONTROL, st.text(max_size=10)),
    st.integers(),
    st.none(),
    st.lists(st.integers(), max_size=3),
)
BAD_KEYS = st.one_of(
    st.just(""),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=65, max_size=200),
    # the bad character sits inside the key: HTTP strips whitespace around a header value by definition
    st.builds(lambda a, c: a + c + "z", st.text(alphabet="abc", max_size=5), st.sampled_from([" ", "\t", "é", "中"])),
)


def _mutated_body() -> st.SearchStrategy[tuple[bytes, str]]:
    def with_field(field: str, value: Any) -> tuple[bytes, str]:
        body = dict(VALID)
        body[field] = value
        return json.dumps(body, allow_nan=True).encode(), f"{field}={value!r}"[:80]

    missing = st.sampled_from(sorted(VALID)).map(
        lambda field: (json.dumps({k: v for k, v in VALID.items() if k != field}).encode(), f"missing {field}")
    )
    return st.one_of(
        BAD_AMOUNTS.map(lambda v: with_field("amount_fen", v)),
        st.sampled_from(["user_id", "card_id", "channel"]).flatmap(lambda f: BAD_IDS.map(lambda v: with_field(f, v))),
        st.sampled_from(["NOPE", "icbc", "", "ICBC "]).map(lambda v: with_field("channel", v)),
        missing,
    )


RAW_BODIES = st.one_of(
    st.binary(max_size=200).filter(lambda b: not _is_json_object(b)).map(lambda b: (b, "raw bytes")),
    st.sampled_from([b"", b"{", b"[]", b"null", b'"x"', b"123", b'{"amount_fen": NaN}', b'{"a":1}' * 3]).map(
        lambda b: (b, "malformed json")
    ),
    st.just((b'{"amount_fen": Infinity, "user_id": "u", "card_id": "c", "channel": "ICBC"}', "Infinity")),
    st.just((b'{"amount_fen": 1e400, "user_id": "u", "card_id": "c", "channel": "ICBC"}', "1e400")),
)


def _is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except ValueError:
        return False


REQUESTS = st.one_of(
    st.tuples(st.just("POST"), st.just("/v1/repayments"), _mutated_body(), st.just("key")),
    st.tuples(st.just("POST"), st.just("/v1/repayments"), RAW_BODIES, st.just("key")),
    st.tuples(
        st.just("POST"),
        st.just("/v1/repayments"),
        st.just((json.dumps(VALID).encode(), "valid")),
        st.sampled_from(["no-key", "text/plain", "no-type", "huge"]) | BAD_KEYS,
    ),
    st.tuples(
        st.sampled_from(["PUT", "DELETE", "PATCH"]), st.just("/v1/repayments"), st.just((b"{}", "")), st.just("key")
    ),
    st.tuples(
        st.sampled_from(["GET", "POST", "DELETE"]),
        st.sampled_from(["/", "/v2/repayments", "/v1/repayment", "/admin", "/v1/users", "/%00", "/v1/../etc"]),
        st.just((b"", "")),
        st.just("key"),
    ),
)


def send(target: Target, method: str, path: str, body: bytes, mode: str) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(target.url)
    headers = {"Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex}
    if mode == "no-key":
        del headers["Idempotency-Key"]
    elif mode == "text/plain":
        headers["Content-Type"] = "text/plain"
    elif mode == "no-type":
        del headers["Content-Type"]
    elif mode == "huge":
        body = b'{"pad": "' + b"x" * (1 << 20) + b'"}'
    elif mode != "key":
        headers["Idempotency-Key"] = mode
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        encoded = {k: v.encode("utf-8", "surrogateescape").decode("latin-1") for k, v in headers.items()}
        connection.request(method, path, body=body or None, headers=encoded)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def ledger_rows(target: Target) -> int:
    if not target.ledger.exists():
        return 0
    with sqlite3.connect(target.ledger, timeout=10) as db:
        return int(db.execute("SELECT COUNT(*) FROM repayments").fetchone()[0])


def fuzz(target: Target) -> None:
    before = ledger_rows(target)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(REQUESTS)
    def check(request: tuple[str, str, tuple[bytes, str], str]) -> None:
        method, path, (body, why), mode = request
        status, headers, raw = send(target, method, path, body, mode)
        context = f"{method} {path} {why!r} mode={mode!r} → {status} {raw[:200]!r}"
        assert 400 <= status < 500, context
        assert headers.get("content-type", "").startswith("application/problem+json"), context
        problem = json.loads(raw)
        assert problem["status"] == status, context
        assert isinstance(problem["code"], str) and problem["code"], context
        assert isinstance(problem["retryable"], bool), context

    check()
    assert ledger_rows(target) == before, "bad input must never reach the ledger"
    parts = urlsplit(target.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        connection.request("GET", "/healthz")
        assert connection.getresponse().status == 200, "the process must survive the battery"
    finally:
        connection.close()


@pytest.mark.timeout(120)
def test_fuzz_lone_replica(lone_replica: Target) -> None:
    fuzz(lone_replica)


@pytest.mark.timeout(120)
def test_fuzz_through_router(router: Target) -> None:
    fuzz(router)
