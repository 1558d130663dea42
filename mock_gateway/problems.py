"""The one problem middleware of both front ends (a replica and the router): every failure as problem+json.

`problem_middleware(source, ...)` builds it. Around every request it

- refuses dot-segments (`.`, `..`, also percent-encoded) in the raw path with 400 before any route matches: the
  router forwards `/v1/…` paths, and `/v1/../admin/drain` must never reach a replica's own endpoints;
- turns a raised `GatewayError` into its problem document, and aiohttp's own 404/405/413 into theirs;
- answers anything else — a genuine server fault, never an input (inputs are refused where they are read) —
  with one log record carrying the traceback and a 500 INTERNAL_ERROR problem;
- stamps `X-Replica` with `source` unless the answer already names its replica (one forwarded by the router).

A client that goes away mid-request is not a fault: the connection errors it causes are re-raised for aiohttp
to drop quietly, with nothing logged and nothing answered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import unquote

from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from mock_gateway.errors import (
    BadRequest,
    GatewayError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Before = Callable[[web.Request], Awaitable[None]]
Observe = Callable[[web.Request, web.StreamResponse, str, float], None]
"""(request, response, problem code or "", seconds taken): what a front end counts per request."""

CODE_KEY: Final = web.ResponseKey("code", str)
"""The problem code of an answer that is not raised (a replayed decline): for the metrics label."""
DOT_SEGMENTS: Final = frozenset({".", ".."})


def problem_middleware(
    source: str,
    *,
    max_body_bytes: int,
    before: Before | None = None,
    observe: Observe | None = None,
) -> Middleware:
    """The middleware of one front end: `source` is its `X-Replica` (a replica's name, or "router");
    `before` runs after the path check and before the handler (a replica's arrival faults); `observe` sees
    every answer."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        code = ""
        try:
            reject_dot_segments(request.raw_path)
            if before is not None:
                await before(request)
            response = await handler(request)
            code = response.get(CODE_KEY, "")
        except GatewayError as raised:
            response, code = raised.to_response(), raised.code
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            translated = from_http_exception(request, exc, max_body_bytes)
            response, code = translated.to_response(), translated.code
        except ConnectionResetError:
            raise  # the client went away: nobody to answer, nothing to log
        except Exception:
            log.exception("internal error on %s %s", request.method, request.path[:200])
            fault = GatewayError(f"the {source} hit an internal error; it was logged")
            response, code = fault.to_response(), fault.code
        response.headers.setdefault("X-Replica", source)
        if observe is not None:
            observe(request, response, code, time.perf_counter() - started)
        return response

    return middleware


def reject_dot_segments(raw_path: str) -> None:
    """400 for a path with a `.` or `..` segment, literal or percent-encoded (`%2e%2e`), before any routing."""
    path = raw_path.split("?", 1)[0]
    if "." not in path and "%" not in path:
        return  # the common case, without splitting
    if any(unquote(segment) in DOT_SEGMENTS for segment in path.split("/")):
        raise ValidationFailed([("path", f"the path must not contain '.' or '..' segments (got {path[:100]!r})")])


def from_http_exception(request: web.Request, exc: web.HTTPException, max_body_bytes: int) -> GatewayError:
    """aiohttp's own refusals (no route, wrong method, body too large) as the gateway's problems."""
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(request.method, set(exc.allowed_methods))
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge(max_body_bytes)
    if isinstance(exc, web.HTTPNotFound):
        return NotFound(f"no route for {request.method} {request.path[:200]!r}")
    error = BadRequest(exc.reason or "HTTP error") if exc.status < 500 else GatewayError(exc.reason or "HTTP error")
    error.status = exc.status
    return error


class _ProblemRequestHandler(RequestHandler):
    """aiohttp answers a request it cannot even parse (a header line over 8190 bytes, a bad request line) from
    its protocol handler, before any middleware, as text/plain; this answers the same status as problem+json."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # its logging and its "already sent" check
        error = BadRequest(_PARSE_ERROR_DETAIL) if status < 500 else GatewayError("internal error; it was logged")
        error.status = status
        response = error.to_response()
        response.force_close()
        return response


_PARSE_ERROR_DETAIL: Final = (
    "the request is not valid HTTP/1.1 or is over the server's limits (request line or a header line at most "
    "8190 bytes, at most 128 headers)"
)


class _ProblemServer(web.Server):
    __slots__ = ()

    def __call__(self) -> RequestHandler:
        return _ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class ProblemRunner(web.AppRunner):
    """`web.AppRunner` whose unparseable requests are answered as problem+json too (see _ProblemRequestHandler)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _ProblemServer
        return server
