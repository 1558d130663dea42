"""Every error of the gateway, in one tree (as httpx draws its own): the class says what went wrong and where.

    Exception
     ├── GatewayError          a request's answer as RFC 9457 problem+json, one class per `code`: its tree is in
     │                         its docstring; `mock_gateway.problems` renders it, the one mapping (docs/gateway.md)
     ├── ConfigError           a bad configuration, one line naming the key: exit 2, nothing started
     ├── LedgerError           nothing was committed: a request's 503 REPLICA_UNAVAILABLE, or exit 3 at start
     ├── ClusterUsageError     the cluster was asked for what it cannot serve: exit 2, nothing started
     └── ClusterStartError     the cluster failed to come up: exit 3

A handler only ever raises; each class says what a client, an operator or a process exit makes of it. Two
signals stay inside their package and are not errors: the ledger's `LockBusy` (retry the batch on the writer
thread) and the cluster's `AttemptFailed` (forwarding tells the router to retry on another replica).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # the CLI imports this tree to name its errors; only a server builds responses (aiohttp)
    from aiohttp import web

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://surge.invalid/problems/"


class GatewayError(Exception):
    """Base of every error answered as problem+json; subclasses fix status, code and title. The tree:

    GatewayError                      500 INTERNAL_ERROR: a fault of the gateway itself, logged
     ├── BadRequest                    400, never stored against an idempotency key
     │    ├── InvalidJson              INVALID_JSON
     │    ├── ValidationFailed         VALIDATION_ERROR (errors: [{field, message}])
     │    └── MissingIdempotencyKey    MISSING_IDEMPOTENCY_KEY
     ├── Unauthorized                  401 UNAUTHORIZED (admin endpoints)
     ├── SignatureInvalid              401 SIGNATURE_INVALID (`[signing] required`)
     ├── NotFound                      404 NOT_FOUND
     ├── MethodNotAllowed              405 METHOD_NOT_ALLOWED
     ├── IdempotencyInFlight           409 IDEMPOTENCY_IN_FLIGHT (Retry-After)
     ├── ReplicaNotRunning             409 REPLICA_NOT_RUNNING (router admin: the process is not running)
     ├── PayloadTooLarge               413 PAYLOAD_TOO_LARGE
     ├── UnsupportedMediaType          415 UNSUPPORTED_MEDIA_TYPE
     ├── IdempotencyKeyReused          422 IDEMPOTENCY_KEY_REUSED
     ├── LimitExceeded                 422 business declines, stored against the key
     │    ├── SingleLimitExceeded      SINGLE_LIMIT_EXCEEDED (limit_fen, suggested_plan)
     │    └── DailyLimitExceeded       DAILY_LIMIT_EXCEEDED (scope, limit_fen, remaining_fen, resets_at, plan)
     ├── RateLimited                   429 RATE_LIMITED (scope, retry_after_ms, RateLimit headers)
     ├── Unavailable                   503, admission or fault, never stored
     │    ├── ChannelBusy              CHANNEL_BUSY
     │    ├── ReplicaUnavailable       REPLICA_UNAVAILABLE
     │    ├── NoHealthyReplica         NO_HEALTHY_REPLICA (raised by the router)
     │    └── RestartTimedOut          RESTART_TIMED_OUT (router admin: the old process did not exit)
     └── OutcomeUnknown                504 OUTCOME_UNKNOWN (router): a replica may have recorded it
    """

    status: int = 500  # an instance may override it (an injected fault picks its status)
    code: ClassVar[str] = "INTERNAL_ERROR"
    title: ClassVar[str] = "Internal error"
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        detail: str,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra: dict[str, Any] = dict(extra or {})
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The problem document; the extra members never override the standard ones."""
        return {
            **self.extra,
            "type": TYPE_BASE + self.code.lower().replace("_", "-"),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            "retryable": self.retryable,
        }

    def to_response(self) -> web.Response:
        return problem_response(self.status, json.dumps(self.body()), self.headers)


def problem_response(status: int, body: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """A problem+json response from an already-encoded body (used for stored declines on replay too)."""
    from aiohttp import web

    return web.Response(status=status, text=body, content_type=PROBLEM_CONTENT_TYPE, headers=headers)


def retry_after_header(seconds: float) -> str:
    """Retry-After only takes whole seconds; round up so a client never comes back too early."""
    return str(max(1, math.ceil(seconds)))


class BadRequest(GatewayError):
    status = 400
    code = "VALIDATION_ERROR"
    title = "Bad request"


class InvalidJson(BadRequest):
    code = "INVALID_JSON"
    title = "Body is not valid JSON"


class ValidationFailed(BadRequest):
    code = "VALIDATION_ERROR"
    title = "Request failed validation"

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        detail = "; ".join(message for _, message in errors)
        super().__init__(detail, extra={"errors": [{"field": f, "message": m} for f, m in errors]})


class MissingIdempotencyKey(BadRequest):
    code = "MISSING_IDEMPOTENCY_KEY"
    title = "Idempotency-Key header is required"

    def __init__(self) -> None:
        super().__init__(
            "header 'Idempotency-Key' is required (1-64 visible ASCII characters)",
            extra={"errors": [{"field": "Idempotency-Key", "message": "required"}]},
        )


class Unauthorized(GatewayError):
    status = 401
    code = "UNAUTHORIZED"
    title = "Missing or wrong bearer token"

    def __init__(self) -> None:
        super().__init__(
            "admin endpoints need 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": 'Bearer realm="surge-admin"'},
        )


class SignatureInvalid(GatewayError):
    status = 401
    code = "SIGNATURE_INVALID"
    title = "Request signature refused"

    def __init__(self, reason: str) -> None:
        super().__init__(f"{reason}: sign X-Timestamp, X-Nonce and the body with the shared key (docs/gateway.md)")


class NotFound(GatewayError):
    status = 404
    code = "NOT_FOUND"
    title = "Not found"


class MethodNotAllowed(GatewayError):
    status = 405
    code = "METHOD_NOT_ALLOWED"
    title = "Method not allowed"

    def __init__(self, method: str, allowed: set[str]) -> None:
        allow = ", ".join(sorted(allowed))
        super().__init__(f"{method} is not allowed here (allowed: {allow})", headers={"Allow": allow})


class IdempotencyInFlight(GatewayError):
    status = 409
    code = "IDEMPOTENCY_IN_FLIGHT"
    title = "A request with this Idempotency-Key is still being processed"
    retryable = True

    def __init__(self, key: str) -> None:
        super().__init__(
            f"a request with Idempotency-Key {key!r} is still being processed; retry later",
            headers={"Retry-After": "1"},
        )


class ReplicaNotRunning(GatewayError):
    status = 409
    code = "REPLICA_NOT_RUNNING"
    title = "The replica's process is not running"


class PayloadTooLarge(GatewayError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"
    title = "Body too large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"body must be at most {limit} bytes", extra={"max_body_bytes": limit})


class UnsupportedMediaType(GatewayError):
    status = 415
    code = "UNSUPPORTED_MEDIA_TYPE"
    title = "Body must be application/json"

    def __init__(self, got: str) -> None:
        super().__init__(f"Content-Type must be application/json (got {got!r})")


class IdempotencyKeyReused(GatewayError):
    status = 422
    code = "IDEMPOTENCY_KEY_REUSED"
    title = "Idempotency-Key already used with another body"

    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used with a different body")


class LimitExceeded(GatewayError):
    """A business decline: 422 so that proxies and client libraries never retry it on their own."""

    status = 422


class SingleLimitExceeded(LimitExceeded):
    code = "SINGLE_LIMIT_EXCEEDED"
    title = "Amount over the channel's per-transaction limit"


class DailyLimitExceeded(LimitExceeded):
    code = "DAILY_LIMIT_EXCEEDED"
    title = "Today's limit would be exceeded"


class RateLimited(GatewayError):
    status = 429
    code = "RATE_LIMITED"
    title = "Too many requests"
    retryable = True

    def __init__(self, scope: str, retry_after_s: float, rate_per_s: float) -> None:
        retry_ms = max(1, math.ceil(retry_after_s * 1000))
        wait_s = retry_after_header(retry_after_s)
        super().__init__(
            f"the {scope} rate cap of {rate_per_s:g}/s is reached; retry in {retry_ms} ms",
            extra={"scope": scope, "retry_after_ms": retry_ms},
            headers={
                "Retry-After": wait_s,
                "RateLimit-Policy": f'"{scope}";q={max(1, math.floor(rate_per_s))};w=1',
                "RateLimit": f'"{scope}";r=0;t={wait_s}',
            },
        )


class Unavailable(GatewayError):
    status = 503
    retryable = True

    def __init__(self, detail: str, *, retry_after_s: float = 1.0, status: int | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": retry_after_header(retry_after_s)})
        if status is not None:
            self.status = status


class ChannelBusy(Unavailable):
    code = "CHANNEL_BUSY"
    title = "The bank channel is saturated"


class ReplicaUnavailable(Unavailable):
    code = "REPLICA_UNAVAILABLE"
    title = "This replica cannot serve the request"


class NoHealthyReplica(Unavailable):
    code = "NO_HEALTHY_REPLICA"
    title = "No healthy replica is left"


class RestartTimedOut(Unavailable):
    code = "RESTART_TIMED_OUT"
    title = "The replica's old process did not exit in time"


class OutcomeUnknown(GatewayError):
    """The router sent the request to a replica that then vanished (timeout, reset) and could not retry it.

    A 503 would promise that nothing was stored, which is false here: the replica may have committed before it
    died. 504 says "unknown — ask again with the same Idempotency-Key", which returns the stored answer if
    there is one; the invariant checkers treat it as an unknown outcome, never as a definite failure.
    """

    status = 504
    code = "OUTCOME_UNKNOWN"
    title = "The outcome of this request is unknown"
    retryable = True

    def __init__(self, detail: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(detail, headers={"Retry-After": retry_after_header(retry_after_s)})


class LedgerError(Exception):
    """The ledger could not record (lock timeout, disk error); nothing of the request was committed."""


class ConfigError(Exception):
    """A bad configuration; the message is one line naming the key, e.g. "limits.user_tps must be > 0"."""


class ClusterUsageError(Exception):
    """Exit 2: the request cannot be served as asked and nothing was started."""


class ClusterStartError(Exception):
    """Exit 3: the cluster itself failed to come up."""
