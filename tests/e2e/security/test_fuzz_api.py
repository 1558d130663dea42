"""Hypothesis throws bad input at the gateway — through the router and at a lone replica — and every answer must
be a 4xx problem+json, with the ledger unchanged and the process alive (no input ever gets a 500).

The battery: mutated and malformed bodies, bad keys and media types, JSON nested up to 20 000 deep (also inside
a field), user ids up to 200 000 characters, header values that are not UTF-8 (Idempotency-Key, Content-Type,
Authorization on an admin route) and paths with dot-segments, literal or percent-encoded."""

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

from tests.e2e.security.conftest import Target

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
    st.builds(
        lambda a, c: a + c + "z",
        st.text(alphabet="abc", min_size=1, max_size=5),
        st.sampled_from([" ", "\t", "é", "中"]),
    ),
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


def _nested(depth: int, opener: str, inside_field: bool) -> tuple[bytes, str]:
    closer = {"[": "]", '{"a": ': "}"}[opener]
    nest = opener * depth + "1" + closer * depth
    body = json.dumps({**VALID, "user_id": "@"}).replace('"@"', nest) if inside_field else nest
    return body.encode(), f"nested {depth} deep{' in user_id' if inside_field else ''}"


NESTED = st.builds(_nested, st.integers(min_value=1, max_value=20_000), st.sampled_from(["[", '{"a": ']), st.booleans())
HUGE_USER_IDS = st.integers(min_value=65, max_value=200_000).map(
    lambda n: (json.dumps({**VALID, "user_id": "u" * n}).encode(), f"user_id of {n} characters")
)
NOT_UTF8 = st.binary(min_size=1, max_size=40).filter(lambda b: any(c >= 0x80 for c in b) and not set(b) & {10, 13, 0})
DOT_SEGMENT = st.sampled_from(["..", ".", "%2e%2e", "%2E%2e", "%2e", ".%2E"])
PATH_SEGMENT = st.sampled_from(["v1", "repayments", "users", "u1", "limits", "admin", "drain", "metrics", "readyz"])
DOT_PATHS = st.builds(
    lambda head, dots, tail, query: "/" + "/".join([*head, *dots, *tail]) + query,
    st.lists(PATH_SEGMENT, max_size=3),
    st.lists(DOT_SEGMENT, min_size=1, max_size=3),
    st.lists(PATH_SEGMENT, max_size=3),
    st.sampled_from(["", "?x=1", "?a=..%2f"]),
)

REQUESTS = st.one_of(
    st.tuples(st.just("POST"), st.just("/v1/repayments"), NESTED, st.just("key")),
    st.tuples(st.just("POST"), st.just("/v1/repayments"), HUGE_USER_IDS, st.just("key")),
    st.tuples(
        st.just("POST"),
        st.just("/v1/repayments"),
        st.just((json.dumps(VALID).encode(), "valid")),
        st.tuples(st.sampled_from(["Idempotency-Key", "Content-Type"]), NOT_UTF8),
    ),
    st.tuples(
        st.just("GET"), st.just("/admin/faults"), st.just((b"", "")), st.tuples(st.just("Authorization"), NOT_UTF8)
    ),
    st.tuples(
        st.sampled_from(["GET", "POST", "DELETE"]), DOT_PATHS, st.just((b"{}", "dot-segments")), st.just("admin")
    ),
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


Mode = str | tuple[str, bytes]
"""How the headers are spoiled: a name from `send`, or (header, raw bytes) sent as they are."""


def send(target: Target, method: str, path: str, body: bytes, mode: Mode) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(target.url)
    headers: dict[str, str | bytes] = {"Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex}
    if isinstance(mode, tuple):
        headers[mode[0]] = mode[1]
    elif mode == "admin":
        headers["Authorization"] = f"Bearer {target.token}"
    elif mode == "no-key":
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
        encoded = {
            k: v if isinstance(v, bytes) else v.encode("utf-8", "surrogateescape").decode("latin-1")
            for k, v in headers.items()
        }
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

    @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(REQUESTS)
    def check(request: tuple[str, str, tuple[bytes, str], Mode]) -> None:
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
