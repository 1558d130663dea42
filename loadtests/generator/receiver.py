"""The callback receiver's HTTP/1.1: a gevent StreamServer whose requests are parsed by httptools (llhttp).

Why not gevent's WSGI server, which it replaced: per delivery it parses the head twice (its own request line,
then every header through the standard library's email parser), builds a WSGI environ of some thirty keys and
writes the status and headers through several layers; in callback mode that was the largest cost the receiver
added to an arrival (docs/perf/generator-settlement.md). What a request *is* is still decided by a well-kept
parser: llhttp reads every byte, so content-length and chunked bodies, pipelined requests and keep-alive are
llhttp's, not this module's.

What the receiver promises: each complete request is handed to `handle(method, path, signature, body)` in the
order it arrived on its connection and answered with exactly the (status line, body) it returns; a connection
stays open while the client asks for keep-alive; bytes that are not HTTP/1.x, or a body past MAX_BODY_BYTES, get
400 or 413 and the connection is closed. Only the one header the deliveries are verified by is kept.
"""

from __future__ import annotations

from collections.abc import Callable

import httptools
from gevent.server import StreamServer
from gevent.socket import socket

MAX_BODY_BYTES = 1 << 20  # a callback is a small JSON document; past this it is refused (413), not buffered
RECV_BYTES = 65536

Handler = Callable[[str, str, str, bytes], tuple[str, bytes]]


class _TooLarge(Exception):
    """A request body passed MAX_BODY_BYTES."""


class _Request:
    """httptools' callbacks for one connection: the requests completed so far, in order."""

    __slots__ = ("body", "done", "header", "parser", "signature", "size", "url")

    def __init__(self, header: bytes) -> None:
        self.header = header  # the verifying header's name, lower-case ASCII
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.signature = b""
        self.body: list[bytes] = []
        self.size = 0
        self.done: list[tuple[str, str, str, bytes, bool]] = []  # method, path, signature, body, keep-alive

    def on_message_begin(self) -> None:
        self.url, self.signature, self.body, self.size = b"", b"", [], 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == self.header:
            self.signature = value

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > MAX_BODY_BYTES:
            raise _TooLarge
        self.body.append(body)

    def on_message_complete(self) -> None:
        path = self.url.split(b"?", 1)[0].decode("latin-1")
        method = self.parser.get_method().decode("latin-1")
        keep = self.parser.should_keep_alive()
        self.done.append((method, path, self.signature.decode("latin-1"), b"".join(self.body), keep))


def _head(status: str, length: int, keep: bool) -> bytes:
    close = "" if keep else "Connection: close\r\n"
    return f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {length}\r\n{close}\r\n".encode()


class Receiver:
    """A loopback HTTP/1.1 server on a free port; `start`, `port`, `stop` (module docstring)."""

    def __init__(self, handle: Handler, signature_header: str | None) -> None:
        self.handle = handle
        self.header = (signature_header or "").lower().encode("latin-1")
        self.server = StreamServer(("127.0.0.1", 0), self._connection)

    def start(self) -> None:
        self.server.start()

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def stop(self, timeout: float) -> None:
        self.server.stop(timeout=timeout)

    def _connection(self, sock: socket, _address: object) -> None:
        request = _Request(self.header)
        try:
            while True:
                data = sock.recv(RECV_BYTES)
                if not data:
                    return
                refusal = ""
                try:
                    request.parser.feed_data(data)
                except httptools.HttpParserCallbackError as exc:
                    too_large = isinstance(exc.__context__, _TooLarge)
                    refusal = "413 Content Too Large" if too_large else "400 Bad Request"
                except (httptools.HttpParserError, httptools.HttpParserUpgrade):
                    refusal = "400 Bad Request"
                for method, path, signature, body, keep in request.done:  # the requests complete before it
                    status, answer = self.handle(method, path, signature, body)
                    sock.sendall(_head(status, len(answer), keep and not refusal) + answer)
                    if not keep:
                        return
                request.done.clear()
                if refusal:
                    sock.sendall(_head(refusal, 0, False))
                    return
        except OSError:
            return  # the sender went away: nothing to answer
        finally:
            sock.close()
