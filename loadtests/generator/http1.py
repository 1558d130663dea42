"""HTTP/1.1 on gevent sockets for the generator: one request, one response, kept-alive connections reused.

Why not geventhttpclient's HTTPClient, which Locust's FastHttpUser sends through: per request it merges the
headers into case-insensitive `Headers` objects twice, checks every header with a regular expression, builds the
request head by string concatenation, probes the pooled socket with `select`, and calls back into Python for
every header field and value. One request after another against a bare handler that is 57–59 µs of CPU per
request through HTTPClient and 34–35 µs here — the largest single cost of an arrival (docs/performance.md, "Load
generator"). What a response *means* is still decided by a well-kept parser, not by code here: geventhttpclient's
llhttp (the Node.js HTTP parser, in C) reads every byte, so content-length, chunked and read-until-close bodies,
interim 1xx answers and keep-alive are llhttp's. What `Connections` promises its one caller (transport.py) is
said in its docstring.
"""

from __future__ import annotations

import socket as _stdlib_socket
import time
from http.client import HTTPException
from urllib.parse import urlsplit

import gevent.select
import gevent.socket
import gevent.ssl
from geventhttpclient._parser import HTTPResponseParser

from loadtests.scenario.profile_answers import MAX_BODY_BYTES  # a target profile's `response.max_body_bytes` default

RECV_BYTES = 16384
MAX_HEAD_BYTES = 64 << 10  # status line and header fields, interim 1xx answers included: nginx's default is 8 KiB
NO_BODY_STATUSES = frozenset({204, 304})  # RFC 9110 §6.4.1: their Content-Length describes no body here
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # RFC 9110 §8.6: a length is sent even when the body is empty
_PEEK = _stdlib_socket.MSG_PEEK


class ProtocolError(HTTPException):
    """The server's bytes were not one complete HTTP/1.x response."""


class TooLarge(ProtocolError):
    """The response's body (or its head) passed the bound surge holds per attempt; nothing of it is kept."""


class Headers(dict[str, str]):
    """A response's header fields by lower-cased name; a repeated field is joined with ", " (RFC 9110 §5.3)."""

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


class Response:
    """A complete response: status, body (decoded from chunks when chunked), header fields."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes, headers: Headers) -> None:
        self.status = status
        self.body = body
        self.headers = headers


class _Reader(HTTPResponseParser):
    """llhttp's callbacks, gathering one final response (interim 1xx answers are read past).

    A callback returning true makes llhttp stop with an error (feed raises HTTPParseError); an exception raised
    in a callback comes out of feed as it is."""

    def __init__(self, head_only: bool, max_body: int) -> None:
        super().__init__()
        self.head_only = head_only  # a HEAD response has no body whatever its length says
        self.max_body = max_body
        self.status = 0  # the final response's, set when its header fields are all read (0: not yet)
        self.headers = Headers()
        self.body = bytearray()
        self.complete = False
        self._field = ""
        self._value: str | None = None

    def _on_message_begin(self) -> bool:
        return self.complete  # another message after the answer: stop here, it is nobody's answer

    def _on_status(self, _: str) -> None:
        pass

    def _on_header_field(self, piece: str) -> None:
        if self._value is not None:
            self._flush()
            self._field = piece
        else:
            self._field += piece  # llhttp may hand a name over in pieces split across reads

    def _on_header_value(self, piece: str) -> None:
        self._value = piece if self._value is None else self._value + piece

    def _flush(self) -> None:
        name, value = self._field.lower(), self._value or ""
        earlier = self.headers.get(name)
        dict.__setitem__(self.headers, name, value if earlier is None else f"{earlier}, {value}")
        self._field, self._value = "", None

    def _on_headers_complete(self) -> bool:
        if self._field:
            self._flush()
        status = self.get_code()
        if status < 200:
            if status < 100:  # llhttp takes any three digits; 000 is no interim answer to wait past
                raise ProtocolError(f"status {status:03d} is not an HTTP status")
            return self.head_only
        if status > 599:
            raise ProtocolError(f"status {status} is not an HTTP status")
        self.status = status
        if self.head_only or status in NO_BODY_STATUSES:
            return True
        if self.get_remaining_content_length() > self.max_body:  # announced too large: not even started
            raise TooLarge(f"the response announced a body of more than {self.max_body} bytes")
        return False

    def _on_body(self, data: bytes) -> None:
        self.body += data
        if len(self.body) > self.max_body:
            raise TooLarge(f"the response's body passed {self.max_body} bytes")

    def _on_message_complete(self) -> None:
        if self.status:
            self.complete = True
        else:  # 1xx: the final answer follows on the same connection
            self.headers = Headers()
            self.body = bytearray()


class Connections:
    """Kept-alive connections to one origin (`base_url`: scheme, host, port, optional base path), most recently
    used first; at most `keep` idle ones are kept. Not thread-safe: one per process, shared by its greenlets.

    What it promises its one caller (transport.py):

    - A request is sent at most once. A POST is never re-sent after a send error (RFC 9110 §9.2.2), so every
      attempt the gateway may have seen is one row of the history. A pooled connection the server has closed while
      it was idle is noticed before the request is sent (a non-blocking peek) and replaced by a new one.
    - `timeout_s` bounds the whole attempt — connect, send and the complete response — as `client.timeout_s` is
      documented (docs/scenarios.md); past it the attempt raises TimeoutError and the connection is closed.
    - No answer raises OSError (refused, reset, closed, timed out) or ProtocolError (not HTTP/1.x, cut off, a
      status outside 100–599, a body past `max_body` bytes — `TooLarge` — or a head past MAX_HEAD_BYTES).
    - The answer is the first complete final response, and only it: its status, header fields and body are fixed
      when llhttp completes it. Any byte after it (a second response in the same segment, a stray `100 Continue`)
      stops the parsing and makes the connection unusable (closed, never pooled), so it can never be taken for
      another attempt's answer. What arrives later, while the connection is idle, is caught by the liveness peek.
    - What is held per attempt is bounded: the body by `max_body`, the head (with any interim 1xx answers) by
      MAX_HEAD_BYTES; past either the attempt fails at once with TooLarge and the connection is closed, so a
      server announcing or streaming gigabytes costs a few kilobytes of reading, not the process's memory.
    - Redirects are answers like any other: nothing here follows them.
    """

    def __init__(
        self,
        base_url: str,
        timeout_s: float,
        keep: int,
        max_body: int = MAX_BODY_BYTES,
        tls_context: gevent.ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.base_path = parts.path.rstrip("/")
        bracketed = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if self.tls else 80
        self.host_header = bracketed if self.port == default_port else f"{bracketed}:{self.port}"
        self.timeout_s = timeout_s
        self.keep = keep
        self.max_body = max_body
        self._idle: list[gevent.socket.socket] = []
        self._tls_context: gevent.ssl.SSLContext | None = None
        if self.tls and tls_context is not None:  # a target profile's [tls]: verified unless it says otherwise
            self._tls_context = tls_context
        elif self.tls:  # the built-in API on loopback carries self-signed certificates: not verified, as before
            context = gevent.ssl.SSLContext(gevent.ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = gevent.ssl.CERT_NONE
            self._tls_context = context

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Response:
        """One attempt: `path` is appended to the base path; `headers` must not name Host or Content-Length."""
        deadline = time.monotonic() + self.timeout_s
        head = [f"{method} {self.base_path}{path} HTTP/1.1\r\nHost: {self.host_header}\r\n"]
        for name, value in headers.items():
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name or ":" in name:
                raise ValueError(f"header {name!r} would break the request head")
            head.append(f"{name}: {value}\r\n")
        if body or method in BODY_METHODS:
            head.append(f"Content-Length: {len(body)}\r\n")
        head.append("\r\n")
        message = "".join(head).encode("latin-1") + body
        sock = self._connection(deadline)
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))  # a pooled socket was left non-blocking
            sock.sendall(message)
            reader = _Reader(method == "HEAD", self.max_body)
            received = 0
            reusable = True
            while not reader.complete:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("timed out")
                sock.settimeout(remaining)
                data = sock.recv(RECV_BYTES)
                try:
                    reader.feed(data)  # b"": llhttp ends a read-until-close body, or fails a cut-off response
                except HTTPException:
                    if not reader.complete:
                        raise
                    reusable = False  # bytes after the answer (or after `Connection: close`): not pooled
                if not data and not reader.complete:
                    raise ProtocolError("connection closed before the response was complete")
                if not reader.status:  # still in the head (or interim answers): bounded too
                    received += len(data)
                    if received > MAX_HEAD_BYTES:
                        raise TooLarge(f"the response's head passed {MAX_HEAD_BYTES} bytes")
        except BaseException:
            sock.close()
            raise
        if not reusable or not reader.should_keep_alive() or len(self._idle) >= self.keep:
            sock.close()
        else:
            self._idle.append(sock)
        return Response(reader.status, bytes(reader.body), reader.headers)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()

    def _connection(self, deadline: float) -> gevent.socket.socket:
        while self._idle:
            sock = self._idle.pop()
            if self._still_open(sock):
                return sock
            sock.close()
        sock = gevent.socket.create_connection((self.host, self.port), timeout=max(0.001, deadline - time.monotonic()))
        sock.setsockopt(_stdlib_socket.IPPROTO_TCP, _stdlib_socket.TCP_NODELAY, 1)
        if self._tls_context is not None:
            sock = self._tls_context.wrap_socket(sock, server_hostname=self.host)
        return sock

    def _still_open(self, sock: gevent.socket.socket) -> bool:
        """An idle kept-alive connection has nothing to read: EOF or stray bytes mean the server is done with it.
        One non-blocking peek (timeout 0: gevent raises instead of waiting)."""
        if self._tls_context is not None:
            readable, _, _ = gevent.select.select([sock], [], [], 0.0)
            return not readable
        sock.settimeout(0.0)
        try:
            sock.recv(1, _PEEK)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return False
