"""A target profile's reading side: the rules that turn an answer into surge's outcome classes, and how a
payment left pending learns its final state (`[settle.poll]`, `[settle.callback]`).

Rules are checked when the profile loads — at least one 2xx success, pointers that are RFC 6901, statuses that
are HTTP's — so that a profile that could never count a payment as succeeded is exit 2, not a failed run.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from loadtests.scenario.parts import Strict
from loadtests.scenario.profile_templates import (
    POLL_PLACEHOLDERS,
    SURGE_OWNED_HEADERS,
    ProfileError,
    Scalar,
    Segment,
    parse_pointer,
    parse_template,
)

RuleOutcome = Literal["succeeded", "declined", "rate_limited", "shed", "error", "pending"]
SettleOutcome = Literal["succeeded", "declined", "pending"]


def _statuses(value: int | list[int]) -> tuple[int, ...]:
    statuses = (value,) if isinstance(value, int) else tuple(value)
    if not statuses or any(not 100 <= status <= 599 for status in statuses):
        raise ValueError(f"'status' must be HTTP statuses 100-599 (got {value})")
    return statuses


class _AnswerMatch(Strict):
    """What an answer must show for a rule to match: status, `json` pointers and `headers`, all of them."""

    status: tuple[int, ...]
    """The HTTP status this rule is for: an int or a list of ints (100-599)."""
    json_: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict, alias="json")
    """RFC 6901 pointer -> the value (or list of values) the JSON body must hold there; all must match."""
    headers: dict[str, str | list[str]] = Field(default_factory=dict)
    """Header name -> the value (or list of values) it must have; all must match."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, use_attribute_docstrings=True)

    @field_validator("status", mode="before")
    @classmethod
    def _status_list(cls, value: Any) -> tuple[int, ...]:
        if isinstance(value, bool) or not isinstance(value, int | list):
            raise ValueError(f"'status' must be an int or a list of ints (got {value!r})")
        return _statuses(value)

    @field_validator("json_")
    @classmethod
    def _pointers(cls, value: dict[str, Any]) -> dict[str, Any]:
        for pointer in value:
            parse_pointer(pointer)
        return value


class ResponseRule(_AnswerMatch):
    """One rule: all of status, `json` pointers and `headers` must match; the first matching rule wins."""

    outcome: RuleOutcome
    """The class a matching answer counts as; it decides what the client does next (docs/targets.md §3)."""
    code: str = ""
    """The code recorded for a matching answer; SINGLE_/DAILY_LIMIT_EXCEEDED name the limit declines."""
    payment_id: str | None = None
    """A pointer to the target's own payment id in the body, kept in the history as `repayment_id`."""
    retry_after_header: str | None = None
    """The header holding Retry-After (delta-seconds or an HTTP date) that the client's retry waits out."""

    @field_validator("payment_id")
    @classmethod
    def _payment_pointer(cls, value: str | None) -> str | None:
        if value is not None:
            parse_pointer(value)
        return value


MAX_BODY_BYTES = 1 << 20  # the default bound on a response body the generator reads (a 1 MiB answer is absurd)


class Response(Strict):
    rules: tuple[ResponseRule, ...] = Field(min_length=1)
    """Ordered rules: the first that matches classifies the answer; none matching is outcome `error`."""
    max_body_bytes: int = Field(default=MAX_BODY_BYTES, ge=1)
    """The largest response body read (1 MiB by default); a larger one, announced or streamed, makes the attempt
    outcome `error` with code RESPONSE_TOO_LARGE and closes its connection."""

    @model_validator(mode="after")
    def _success_rule(self) -> Response:
        if not any(rule.outcome == "succeeded" and any(200 <= s < 300 for s in rule.status) for rule in self.rules):
            raise ValueError("no rule maps a 2xx status to outcome 'succeeded': no payment could ever succeed")
        return self


class SettleRule(_AnswerMatch):
    """One rule of `[[settle.poll.rules]]`: status, `json` pointers and `headers` must all match; first wins."""

    outcome: SettleOutcome
    """What a matching status answer says: `succeeded`, `declined` (the payment failed) or still `pending`."""
    code: str = ""
    """The code recorded for a final state (e.g. the target's refusal code)."""


class SettlePoll(Strict):
    """How the client asks a pending payment's state (`[client] settlement = "poll"`)."""

    method: Literal["GET", "POST"] = "GET"
    """The status request's method."""
    path: str = Field(pattern=r"^/")
    """The status path under `base_url`: `{payment_id}` (the id the pending rule read) and `{key}`."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Header name -> value template (`{payment_id}`, `{key}`, `${NAME}`)."""
    poll_after_ms: int = Field(default=500, ge=10, le=60_000)
    """The first wait after acceptance, and between polls unless the answer's Retry-After says otherwise."""
    rules: tuple[SettleRule, ...] = Field(min_length=1)
    """Ordered rules for the status answer; none matching counts as still pending."""

    def templates(self) -> dict[str, tuple[Segment, ...]]:
        found = {"path": parse_template(self.path, "settle.poll.path", POLL_PLACEHOLDERS)}
        for name, value in self.headers.items():
            if name.lower() in SURGE_OWNED_HEADERS:
                raise ProfileError(f"settle.poll.headers.{name}: surge sets this header itself; remove it")
            found[f"header {name}"] = parse_template(value, f"settle.poll.headers.{name}", POLL_PLACEHOLDERS)
        return found

    @model_validator(mode="after")
    def _valid(self) -> SettlePoll:
        self.templates()
        if not any(rule.outcome != "pending" for rule in self.rules):
            raise ValueError("no rule maps a status answer to 'succeeded' or 'declined': nothing could ever settle")
        return self


class SettleCallback(Strict):
    """What the target POSTs to `{notify_url}` (`[client] settlement = "callback"`)."""

    key: str
    """JSON pointer to the payment's idempotency key (`{key}` of the request) in the delivered body."""
    status: str
    """JSON pointer to its state in the delivered body."""
    succeeded: Scalar | list[Scalar]
    """The value(s) at `status` meaning the payment succeeded."""
    failed: Scalar | list[Scalar]
    """The value(s) at `status` meaning it failed; any other value is not final (acknowledged, nothing learned)."""
    code: str | None = None
    """JSON pointer to a failure code in the delivered body (optional)."""
    ack_status: int = Field(default=200, ge=200, le=299)
    """The status the receiver answers a delivery it takes."""
    ack_body: str = ""
    """The body it answers with (e.g. `{"received": true}` or `success`)."""
    signature_header: str | None = None
    """The header carrying the HMAC-SHA256 (hex) of the body; unset: deliveries are not signed (not verified)."""
    signature_prefix: str = ""
    """Text before the hex digest in that header (e.g. `sha256=`)."""
    secret: str = ""
    """The HMAC key, usually `${NAME}` from the environment; required with `signature_header`."""

    @model_validator(mode="after")
    def _valid(self) -> SettleCallback:
        for pointer in (self.key, self.status, *([self.code] if self.code is not None else [])):
            parse_pointer(pointer)
        if self.signature_header is not None and not self.secret:
            raise ValueError("signature_header needs secret (the HMAC key, e.g. ${NOTIFY_SECRET})")
        return self


class SettleSpec(Strict):
    poll: SettlePoll | None = None
    """The status request and its rules."""
    callback: SettleCallback | None = None
    """The callback's format and the acknowledgement."""
