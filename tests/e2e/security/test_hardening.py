"""Defects an outside review reproduced, each as a black-box request at a lone replica and through the router: every
answer is problem+json, nothing is charged or stored by a refused request, and no path escapes `/v1/`."""

from __future__ import annotations

import http.client
import json
import uuid
from urllib.parse import urlsplit

import pytest

from tests.e2e.security.conftest import Target

VALID = {"user_id": "u-hard", "card_id": "c-hard", "channel": "ICBC", "amount_fen": 100}
BOTH = ["router", "lone_replica"]


def raw_request(
    target: Target, method: str, path: str, body: bytes = b"", headers: dict[str, bytes | str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request with headers sent as given (bytes go out untouched, the way a broken client sends them)."""
    parts = urlsplit(target.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body or None)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def problem(status: int, headers: dict[str, str], raw: bytes) -> dict[str, object]:
    assert headers.get("content-type", "").startswith("application/problem+json"), (status, headers, raw[:200])
    document: dict[str, object] = json.loads(raw)
    assert document["status"] == status
    return document


def payment_headers(key: str | None = None) -> dict[str, bytes | str]:
    return {"Content-Type": "application/json", "Idempotency-Key": key or uuid.uuid4().hex}


@pytest.mark.parametrize("which", BOTH)
@pytest.mark.parametrize(
    "body",
    [b"[" * 5000, b'{"user_id": ' + b"[" * 5000 + b"]" * 5000 + b"}", b'{"user_id": ' + b"[" * 900 + b"]" * 900 + b"}"],
    ids=["array-5000", "user-id-5000", "user-id-900"],
)
def test_deeply_nested_json_is_a_400_problem(which: str, body: bytes, request: pytest.FixtureRequest) -> None:
    """a RecursionError used to escape the router's JSON peeker as aiohttp's 500 text/plain."""
    target: Target = request.getfixturevalue(which)
    status, headers, raw = raw_request(target, "POST", "/v1/repayments", body, payment_headers())
    assert status == 400
    assert problem(status, headers, raw)["code"] in {"INVALID_JSON", "VALIDATION_ERROR"}


@pytest.mark.parametrize("which", BOTH)
def test_deeply_nested_fault_body_is_a_400_problem(which: str, request: pytest.FixtureRequest) -> None:
    """`POST /admin/faults` with `[` x 5000 was a 500 text/plain on both front ends."""
    target: Target = request.getfixturevalue(which)
    headers: dict[str, bytes | str] = {"Content-Type": "application/json", "Authorization": f"Bearer {target.token}"}
    status, answer, raw = raw_request(target, "POST", "/admin/faults", b"[" * 5000, headers)
    assert status == 400
    assert problem(status, answer, raw)["code"] == "INVALID_JSON"


def test_refused_requests_spend_no_user_quota_at_the_router(router: Target) -> None:
    """the router charged the per-user cap (user_tps 5) before validating, so 415s and 400s used up
    the quota and the user's next valid request got 429."""
    user = f"u-quota-{uuid.uuid4().hex[:8]}"
    body = json.dumps({**VALID, "user_id": user}).encode()
    for _ in range(8):
        status, _, _ = raw_request(router, "POST", "/v1/repayments", body, {"Content-Type": "text/plain"})
        assert status == 415
        bad = json.dumps({**VALID, "user_id": user, "amount_fen": -1}).encode()
        status, _, _ = raw_request(router, "POST", "/v1/repayments", bad, payment_headers())
        assert status == 400
    status, _, raw = raw_request(router, "POST", "/v1/repayments", body, payment_headers())
    assert status == 201, raw[:300]


def test_the_router_refuses_a_huge_user_id_itself(router: Target) -> None:
    """a 16 KB user id is refused before it can become a limiter key (answered by the router)."""
    body = json.dumps({**VALID, "user_id": "x" * 16_000}).encode()
    status, headers, raw = raw_request(router, "POST", "/v1/repayments", body, payment_headers())
    assert status == 400
    assert headers["x-replica"] == "router"
    assert problem(status, headers, raw)["code"] == "VALIDATION_ERROR"
    assert len(raw) < 2000, "the error must not echo the whole id"


@pytest.mark.parametrize("which", BOTH)
@pytest.mark.parametrize("value", [b"Bearer \xff\xfe", b"\xc3\x28 token", b"Bearer " + "中".encode("gbk")])
def test_a_non_utf8_authorization_header_is_401(which: str, value: bytes, request: pytest.FixtureRequest) -> None:
    """a non-UTF-8 Authorization header was a 500 (UnicodeEncodeError in the token check)."""
    target: Target = request.getfixturevalue(which)
    status, headers, raw = raw_request(target, "GET", "/admin/faults", headers={"Authorization": value})
    assert status == 401
    assert problem(status, headers, raw)["code"] == "UNAUTHORIZED"


@pytest.mark.parametrize("which", BOTH)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/../metrics"),
        ("POST", "/v1/../admin/drain"),
        ("GET", "/v1/%2e%2e/metrics"),
        ("GET", "/v1/%2E%2E/readyz"),
        ("POST", "/v1/./repayments"),
        ("GET", "/v1/repayments/../../metrics?x=1"),
    ],
)
def test_dot_segments_are_refused(which: str, method: str, path: str, request: pytest.FixtureRequest) -> None:
    """`/v1/../metrics` and `/v1/../admin/drain` reached a replica's own endpoints via the router."""
    target: Target = request.getfixturevalue(which)
    headers: dict[str, bytes | str] = {"Authorization": f"Bearer {target.token}", "Content-Type": "application/json"}
    status, answer, raw = raw_request(target, method, path, b"{}" if method == "POST" else b"", headers)
    assert status == 400, raw[:200]
    assert problem(status, answer, raw)["code"] == "VALIDATION_ERROR"
    ready, _, _ = raw_request(target, "GET", "/readyz")
    assert ready == 200, "nothing may have drained the replica"


@pytest.mark.parametrize("which", BOTH)
@pytest.mark.parametrize("where", ["header", "url", "headers"])
def test_requests_over_the_parser_limits_are_400_problems(
    which: str, where: str, request: pytest.FixtureRequest
) -> None:
    """an oversized header line or URL got aiohttp's own 400 text/plain."""
    target: Target = request.getfixturevalue(which)
    path, headers = "/v1/repayments", payment_headers()
    if where == "header":
        headers["X-Pad"] = "x" * 10_000
    elif where == "url":
        path = "/v1/repayments?" + "q" * 10_000
    else:
        headers.update({f"X-Many-{i}": "1" for i in range(200)})
    status, answer, raw = raw_request(target, "POST", path, json.dumps(VALID).encode(), headers)
    assert 400 <= status < 500
    assert problem(status, answer, raw)["retryable"] is False
