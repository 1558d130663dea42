"""Target profiles as pure logic: rendering escapes every value for where it lands; the first matching rule wins."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from loadtests.generator.target import Classifier
from loadtests.generator.templates import RequestBuilder, Values
from loadtests.scenario.profile import TargetProfile, load_profile

ACME = Path(__file__).resolve().parents[2] / "examples" / "acme" / "target.toml"
NASTY = 'Zhang "San" \\ 张三 & a=b\n\t'


def profile(**request: object) -> TargetProfile:
    return TargetProfile.model_validate(
        {
            "name": "t",
            "base_url": "http://127.0.0.1:1",
            "request": {"path": "/pay", **request},
            "response": {"rules": [{"status": 200, "outcome": "succeeded"}]},
        }
    )


def values(user_id: str = "u1", amount_fen: int = 123450, attempt: int = 1) -> Values:
    return Values("k1", user_id, "c-1", "ICBC", amount_fen, attempt)


def test_json_body_escapes_quotes_backslashes_control_and_keeps_non_ascii() -> None:
    builder = RequestBuilder(profile(body='{"uid": "{user_id}", "amt": "{amount_yuan}", "fen": {amount_fen}}'), {})
    built = builder.build(values(user_id=NASTY))
    assert json.loads(built.body) == {"uid": NASTY, "amt": "1234.50", "fen": 123450}
    assert "张三" in built.body  # UTF-8, not \\u escapes
    assert built.headers["Content-Type"] == "application/json"


def test_form_body_is_urlencoded_and_round_trips() -> None:
    spec = profile(content_type="application/x-www-form-urlencoded", body="uid={user_id}&amt={amount_yuan}&n={attempt}")
    built = RequestBuilder(spec, {}).build(values(user_id=NASTY, amount_fen=5, attempt=3))
    assert parse_qs(built.body, strict_parsing=True) == {"uid": [NASTY], "amt": ["0.05"], "n": ["3"]}
    assert built.headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_path_values_are_percent_encoded_headers_and_env_are_filled() -> None:
    spec = profile(path="/users/{user_id}/pay", headers={"X-Request-Id": "{key}", "Authorization": "Bearer ${TOK}"})
    builder = RequestBuilder(spec, {"TOK": "t0k"})
    built = builder.build(values(user_id="a/b c"))
    assert built.path == "/users/a%2Fb%20c/pay"
    assert built.headers["X-Request-Id"] == "k1"
    assert built.headers["Authorization"] == "Bearer t0k"
    assert not builder.uses_attempt


def test_env_values_in_a_json_body_are_escaped_too() -> None:
    built = RequestBuilder(profile(body='{"sig": "${SIG}"}'), {"SIG": 'a"b\\'}).build(values())
    assert json.loads(built.body) == {"sig": 'a"b\\'}


ACME_PROFILE = load_profile(ACME, allow_remote=False)


@pytest.mark.parametrize(
    ("status", "body", "headers", "outcome", "code", "payment_id", "wait"),
    [
        (200, {"code": "0000", "data": {"payNo": "P1"}}, {}, "succeeded", "", "P1", None),
        (200, {"code": "E1001"}, {}, "declined", "DAILY_LIMIT_EXCEEDED", "", None),
        (200, {"code": "E1002"}, {}, "declined", "SINGLE_LIMIT_EXCEEDED", "", None),
        (200, {"code": "E9999"}, {}, "error", "HTTP_200", "", None),  # no rule matches: error
        (429, {"code": "E4290"}, {"Retry-After": "2"}, "rate_limited", "E4290", "", 2.0),
        (503, None, {}, "shed", "", "", None),
        (500, None, {}, "error", "HTTP_500", "", None),
    ],
)
def test_acme_rules_classify_in_order(
    status: int, body: object, headers: dict[str, str], outcome: str, code: str, payment_id: str, wait: float | None
) -> None:
    content = None if body is None else json.dumps(body).encode()
    verdict = Classifier(ACME_PROFILE).classify(status, content, headers, now=0.0)
    assert (verdict.outcome, verdict.code, verdict.payment_id, verdict.retry_after_s) == (
        outcome,
        code,
        payment_id,
        wait,
    )


def test_first_match_wins_lists_match_any_value_and_json_types_are_strict() -> None:
    spec = TargetProfile.model_validate(
        {
            "name": "t",
            "base_url": "http://127.0.0.1:1",
            "request": {"path": "/p"},
            "response": {
                "rules": [
                    {"status": [200, 201], "json": {"/ok": True, "/a~1b": ["x", "y"]}, "outcome": "succeeded"},
                    {"status": 200, "headers": {"X-Busy": "1"}, "outcome": "shed"},
                    {"status": 200, "outcome": "declined"},
                ]
            },
        }
    )
    classifier = Classifier(spec)
    assert classifier.classify(201, b'{"ok": true, "a/b": "y"}', {}).outcome == "succeeded"
    assert classifier.classify(200, b'{"ok": 1, "a/b": "y"}', {}).outcome == "declined"  # 1 is not true
    assert classifier.classify(200, b'{"ok": true, "a/b": "y"}', {"X-Busy": "1"}).outcome == "succeeded"
    assert classifier.classify(200, b"not json", {"X-Busy": "1"}).outcome == "shed"
    assert classifier.classify(200, b"[]", {}).outcome == "declined"


@pytest.mark.parametrize(
    ("status", "content", "headers", "outcome", "code", "wait"),
    [
        (200, b"[" * 100_000 + b"]" * 100_000, {}, "error", "UNREADABLE_BODY", None),  # json rules cannot match
        (200, b'{"code": 1' + b"0" * 5000 + b"}", {}, "error", "UNREADABLE_BODY", None),  # past int's 4,300 digits
        (429, b"[" * 100_000, {"Retry-After": "9" * 400}, "rate_limited", "E4290", 86_400.0),  # its rule's code
        (503, b"[" * 100_000 + b"]" * 100_000, {}, "shed", "UNREADABLE_BODY", None),  # status alone, reason kept
        (503, b"<html>busy</html>", {}, "shed", "", None),  # plainly not JSON: nothing unusual
        (200, b'{"code": "0000", "data": {"payNo": {"deep": [1, 2]}}}', {}, "succeeded", "", None),
        (200, b'{"code": "0000", "data": {"payNo": "' + b"P" * 5000 + b'"}}', {}, "succeeded", "", None),
    ],
    ids=[
        "nested-100k",
        "5000-digit-number",
        "400-digit-retry-after",
        "deep-503",
        "html-503",
        "object-payment-id",
        "5000-character-payment-id",
    ],
)
def test_any_body_is_classified_by_the_status_alone_when_it_cannot_be_read(
    status: int, content: bytes, headers: dict[str, str], outcome: str, code: str, wait: float | None
) -> None:
    """A body the JSON parser cannot hold (RecursionError, a number too long) never raises out of the
    classifier: no `json` rule matches it, the status decides, the code says why; a Retry-After is clamped, and
    a payment id that is not a scalar is recorded as none."""
    verdict = Classifier(ACME_PROFILE).classify(status, content, headers, now=0.0)
    payment_id = "P" * 200 if b"PPP" in content else ""  # an id is kept, its first 200 characters
    assert (verdict.outcome, verdict.code, verdict.retry_after_s, verdict.payment_id) == (
        outcome,
        code,
        wait,
        payment_id,
    )
