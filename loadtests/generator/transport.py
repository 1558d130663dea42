"""A generator process's HTTP connections (http1.py) and Locust's view of each attempt.

Locust's FastHttpSession is geventhttpclient's HTTPClient under a UserAgent (a cookie jar, a redirect loop,
header copies, a request object per call) under Locust's own wrapper (URL building, a timing dict, a response
context manager). Surge needs none of it per attempt: it never follows a redirect (a loopback target answering
3xx to another host would lead the load past the loopback guard), sets no cookies, and records every attempt
itself (windows.py, history.py). Measured one request after another against a bare handler: ~97 µs of CPU per
request through FastHttpSession, ~58 µs through geventhttpclient's HTTPClient alone, ~35 µs through http1.py
(docs/performance.md, "Load generator"). Locust's request event is still fired for every attempt (`report`),
with its `context`, so Locust's statistics, web UI, CSV/HTML output and `events.request` listeners see them all.

The process's users share one pool of kept-alive connections, as many as the user pool at most, the most
recently used first: only as many connections stay busy as there are attempts in flight. One connection per
user (FastHttpUser's way) cost ~50 % more CPU per request with 2,000 users at 2,000 arrivals/s than with 500,
although the same requests were sent; shared, the pool's size costs nothing per request.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any

import gevent
from locust.event import EventHook

from loadtests.generator.http1 import Connections, Headers
from loadtests.scenario.profile_answers import MAX_BODY_BYTES

# What comes back instead of an answer: a refused, reset or closed connection and TLS errors (OSError), the
# attempt's timeout (TimeoutError is an OSError), gevent's Timeout, an unparsable or cut-off response
# (HTTPException: http1.ProtocolError, llhttp's HTTPParseError), an answer past the body bound (http1.TooLarge).
NO_ANSWER: tuple[type[BaseException], ...] = (OSError, HTTPException, gevent.Timeout)


@dataclass(slots=True)
class Reply:
    """What payer.py and answers.py read from an attempt: `status_code` 0 and `error` set when no response came back."""

    status_code: int
    content: bytes
    headers: Headers  # case-insensitive; empty without a response
    error: BaseException | None = None


class Failure(Exception):
    """An attempt Locust's statistics count as failed, with the text they show (status and problem code)."""


class Transport:
    """Up to `connections` kept-alive connections to the target (`host`: scheme, host, port, optional base path);
    a response body past `max_body` bytes is no answer (a target profile's `response.max_body_bytes`)."""

    def __init__(
        self,
        host: str,
        timeout_s: float,
        connections: int,
        request_event: EventHook,
        max_body: int = MAX_BODY_BYTES,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.base_url = host.rstrip("/")  # what Locust's request event carries as `url`, with the path
        self.request_event = request_event
        self.connections = Connections(host, timeout_s, connections, max_body, tls_context)

    def send(self, method: str, path: str, body: str, headers: dict[str, str]) -> Reply:
        """One attempt, never followed when redirected."""
        try:
            response = self.connections.request(method, path, body.encode(), headers)
        except NO_ANSWER as exc:
            return Reply(0, b"", Headers(), exc)
        return Reply(response.status, response.body, response.headers)

    def report(
        self,
        method: str,
        path: str,
        name: str,
        reply: Reply,
        *,
        sent: float,
        done: float,
        failure: str | None,
        context: dict[str, Any],
    ) -> None:
        """Locust's request event for one attempt, as FastHttpSession fires it (`failure` None: a success);
        `name` is the row Locust's statistics file it under."""
        self.request_event.fire(  # type: ignore[no-untyped-call]
            request_type=method,
            name=name,
            response_time=(done - sent) * 1000.0,
            response_length=len(reply.content),
            response=reply,
            context=context,
            exception=None if failure is None else Failure(failure),
            start_time=sent,
            url=self.base_url + path,
        )
