"""What a request must look like before anything is charged or stored: the one home of the gateway's input rules.

Both front ends use it — the replica before its caps and its ledger, the router before its global and per-user
caps — so a request the replica would refuse with a 4xx never spends a token of the router's caps, and the two
can never disagree on what is valid. `decode_json` is the one JSON peeker of the gateway: any body, of any
depth, either decodes or raises `InvalidJson` (a 400), never a RecursionError that would become a 500.
"""

from __future__ import annotations

import hashlib
import json
import re
import reprlib
from collections.abc import Collection
from typing import Any, Final, NamedTuple
from urllib.parse import urlsplit

from aiohttp import web

from mock_gateway.errors import (
    InvalidJson,
    MissingIdempotencyKey,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from mock_gateway.net import is_loopback_host

MAX_ID_CHARS: Final = 64
MAX_AMOUNT_FEN: Final = 1_000_000_000_000  # 10 billion yuan: far above any cap, far below int64
FIELDS: Final = frozenset({"user_id", "card_id", "channel", "amount_fen", "notify_url"})
MAX_URL_CHARS: Final = 2048
KEY_PATTERN: Final = re.compile(r"[!-~]{1,64}")  # 1-64 visible ASCII characters (docs/gateway.md)


class Charge(NamedTuple):
    """A validated repayment request: what the caps, the rules and the ledger step work on."""

    key: str
    request_hash: str
    user_id: str
    card_id: str
    channel: str
    amount_fen: int
    notify_url: str | None = None  # async channels: where the settlement callback goes (not part of the hash)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body; a larger one is 413 (the app's `client_max_size` stops a chunked body that grows)."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(limit)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(limit) from None


async def read_charge(
    request: web.Request, channels: Collection[str], limit: int, async_channels: Collection[str] = ()
) -> tuple[Charge, bytes]:
    """`POST /v1/repayments` validated in the contract's order (413, 415, key, JSON, fields); also the raw body,
    which the router forwards unchanged. `notify_url` is accepted on `async_channels` only.

    The request hash covers the money fields only: a retry of the same payment from a process with another
    callback receiver is still the same payment, not a reused key."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(limit)
    if request.content_type.lower() != "application/json":
        raise UnsupportedMediaType(request.headers.get("Content-Type", "")[:100])
    key = idempotency_key(request.headers.get("Idempotency-Key"))
    raw = await read_body(request, limit)
    user_id, card_id, channel, amount, notify_url = _validate(decode_json(raw), channels, async_channels)
    digest = hashlib.sha256(f"{user_id}\n{card_id}\n{channel}\n{amount}".encode()).hexdigest()
    return Charge(key, digest, user_id, card_id, channel, amount, notify_url), raw


def idempotency_key(value: str | None) -> str:
    if value is None or value == "":
        raise MissingIdempotencyKey
    if KEY_PATTERN.fullmatch(value) is None:
        raise ValidationFailed(
            [("Idempotency-Key", f"'Idempotency-Key' must be 1-64 visible ASCII characters (got {show(value)})")]
        )
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# One decoder for the process: json.loads(..., parse_constant=...) would build a new one per call.
_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)


def decode_json(raw: bytes) -> Any:
    """The body as JSON, or 400 INVALID_JSON: bad UTF-8, bad syntax, NaN/Infinity, or nesting too deep."""
    try:
        return _DECODER.decode(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise InvalidJson(f"body is not valid JSON: {str(exc)[:200]}") from None


def peek_code(payload: bytes) -> str | None:
    """The `code` member of a problem document, or None for anything else (the router reads its replicas' 503s)."""
    try:
        data = decode_json(payload)
    except InvalidJson:
        return None
    code = data.get("code") if isinstance(data, dict) else None
    return code if isinstance(code, str) else None


def _validate(
    data: Any, channels: Collection[str], async_channels: Collection[str]
) -> tuple[str, str, str, int, str | None]:
    if not isinstance(data, dict):
        raise ValidationFailed([("body", f"body must be a JSON object (got {type(data).__name__})")])
    errors: list[tuple[str, str]] = [(name, f"unknown field {show(name)}") for name in sorted(set(data) - FIELDS)]
    user_id = _text_field(data, "user_id", errors)
    card_id = _text_field(data, "card_id", errors)
    channel = _text_field(data, "channel", errors)
    if channel is not None and channel not in channels:
        errors.append(("channel", f"'channel' must be one of {', '.join(channels)} (got {show(channel)})"))
    amount = data.get("amount_fen")
    if "amount_fen" not in data:
        errors.append(("amount_fen", "'amount_fen' is required"))
    elif isinstance(amount, bool) or not isinstance(amount, int):
        errors.append(("amount_fen", f"'amount_fen' must be an integer number of fen (got {show(amount)})"))
    elif amount <= 0:
        errors.append(("amount_fen", f"'amount_fen' must be > 0 (got {show(amount)})"))
    elif amount > MAX_AMOUNT_FEN:
        errors.append(("amount_fen", f"'amount_fen' must be <= {MAX_AMOUNT_FEN} (got {show(amount)})"))
    notify_url = data.get("notify_url")
    if notify_url is not None:
        problem = notify_url_problem(notify_url)
        if not problem and channel is not None and channel in channels and channel not in async_channels:
            problem = f"applies only to a channel with asynchronous settlement ({channel} answers at once)"
        if problem:
            errors.append(("notify_url", f"'notify_url' {problem} (got {show(notify_url)})"))
    if errors:
        raise ValidationFailed(errors)
    assert user_id is not None and card_id is not None and channel is not None and isinstance(amount, int)
    return user_id, card_id, channel, amount, notify_url


def notify_url_problem(value: object) -> str:
    """Empty when `value` is a callback URL the gateway may call: http(s) to a loopback address. A mock that
    POSTs wherever a request tells it to is an open relay; load tests keep their traffic on this machine."""
    if not isinstance(value, str):
        return "must be a string"
    if not 1 <= len(value) <= MAX_URL_CHARS or not value.isprintable():
        return f"must be a URL of 1-{MAX_URL_CHARS} printable characters"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return "must be a valid http:// URL"
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return "must be an http:// or https:// URL"
    if not is_loopback_host(parts.hostname):
        return "must point to a loopback address (127.0.0.1, ::1 or localhost)"
    if port == 0:
        return "must not use port 0"
    return ""


def _text_field(data: dict[str, Any], name: str, errors: list[tuple[str, str]]) -> str | None:
    if name not in data:
        errors.append((name, f"'{name}' is required"))
        return None
    value = data[name]
    problem = id_problem(value)
    if problem:
        errors.append((name, f"'{name}' {problem} (got {show(value)})"))
        return None
    return str(value)


def id_problem(value: object) -> str:
    """Empty when `value` is a usable id: 1-64 printable characters (no controls, no lone surrogates)."""
    if not isinstance(value, str):
        return "must be a string"
    if not 1 <= len(value) <= MAX_ID_CHARS:
        return f"must be 1-{MAX_ID_CHARS} characters long"
    if not value.isprintable():
        return "must not contain control characters"
    return ""


def show(value: object) -> str:
    """A value quoted for an error message, at most 80 characters and built without recursion (`reprlib` stops
    at a few levels), so neither a 16 KB id nor a list nested 900 deep can fill the answer or the stack."""
    text = _REPR.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_REPR: Final = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = 80
_REPR.maxother = 80
_REPR.maxlong = 80
