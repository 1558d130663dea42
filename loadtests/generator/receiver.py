"""The callback receiver's HTTP/1.1: non-blocking sockets read in gevent's loop callbacks, parsed by httptools.

Why no greenlet per connection (gevent's StreamServer, and before it gevent's WSGI server): a delivery is a few
hundred bytes handled without waiting on anything, so it needs no stack of its own. Through a StreamServer each
one cost two greenlet switches and gevent's blocking-socket emulation (a timeout, a watcher started and
stopped per recv); read here, in the loop's readiness callback, it costs a recv, the parse and one send
(docs/perf/generator-settlement.md). What a request *is* is still decided by llhttp (httptools): content-length
and chunked bodies, pipelined requests and keep-alive are llhttp's, not this module's.

What the receiver promises: each complete request is handed to `handle(method, path, signature, body)` in the
order it arrived on its connection and answered with exactly the (status line, body) it returns; a connection
stays open while the client asks for keep-alive; bytes that are not HTTP/1.x, or a body past MAX_BODY_BYTES, get
400 or 413 and the connection is closed. Only the one header the deliveries are verified by is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent
import httptools
from gevent.monkey import get_original

MAX_BODY_BYTES = 1 << 20  # a callback is a small JSON document; past this it is refused (413), not buffered
RECV_BYTES = 65536
LISTEN_BACKLOG = 1024
READ, WRITE = 1, 2  # libev's EV_READ, EV_WRITE
_SOCKET: Any = get_original("socket", "socket")

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
        self.listener = _SOCKET()  # the standard library's, never gevent's: nothing here may block
        self.listener.bind(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.loop: Any = gevent.get_hub().loop
        self.watcher: Any = None
        self.connections: set[_Connection] = set()

    def start(self) -> None:
        self.listener.listen(LISTEN_BACKLOG)
        self.watcher = self.loop.io(self.listener.fileno(), READ)
        self.watcher.start(self._accept)

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    def stop(self) -> None:
        """No more connections; the open ones are closed (a delivery is answered in the callback that read it)."""
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher.close()
            self.watcher = None
        self.listener.close()
        for connection in list(self.connections):
            connection.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, _address = self.listener.accept()
            except OSError:  # BlockingIOError: none left waiting; anything else: the next readiness retries
                return
            sock.setblocking(False)
            self.connections.add(_Connection(self, sock))


class _Connection:
    """One accepted connection: read when readable; an answer the socket could not take at once is finished
    when it is writable, reading paused meanwhile (so answers stay in order and nothing unbounded is held)."""

    __slots__ = ("close_after", "out", "reader", "request", "server", "sock", "writer")

    def __init__(self, server: Receiver, sock: Any) -> None:
        self.server = server
        self.sock = sock
        self.request = _Request(server.header)
        self.out = b""  # answer bytes not yet taken by the socket
        self.close_after = False
        self.reader: Any = server.loop.io(sock.fileno(), READ)
        self.writer: Any = None
        self.reader.start(self._readable)

    def _readable(self) -> None:
        try:
            data = self.sock.recv(RECV_BYTES)
        except BlockingIOError:
            return
        except OSError:
            self.close()  # the sender went away: nothing to answer
            return
        if not data:
            self.close()
            return
        request = self.request
        refusal = ""
        try:
            request.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            refusal = "413 Content Too Large" if isinstance(exc.__context__, _TooLarge) else "400 Bad Request"
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            refusal = "400 Bad Request"
        answers = []
        close = bool(refusal)
        try:
            for method, path, signature, body, keep in request.done:  # the requests complete before it
                status, answer = self.server.handle(method, path, signature, body)
                answers.append(_head(status, len(answer), keep and not refusal) + answer)
                if not keep:
                    close, refusal = True, ""
                    break
        except BaseException:
            self.close()  # a handler that raised: the traceback is gevent's to print, the connection ends
            raise
        finally:
            request.done.clear()
        if refusal:
            answers.append(_head(refusal, 0, False))
        self._send(b"".join(answers), close)

    def _send(self, data: bytes, close: bool) -> None:
        self.out += data
        self.close_after = self.close_after or close
        try:
            while self.out:
                self.out = self.out[self.sock.send(self.out) :]
        except BlockingIOError:
            if self.writer is None:  # the client is not reading: wait for room, read nothing more meanwhile
                self.reader.stop()
                self.writer = self.server.loop.io(self.sock.fileno(), WRITE)
                self.writer.start(self._writable)
            return
        except OSError:
            self.close()
            return
        if self.close_after:
            self.close()
        elif self.writer is not None:
            self.writer.stop()
            self.writer.close()
            self.writer = None
            self.reader.start(self._readable)

    def _writable(self) -> None:
        self._send(b"", False)

    def close(self) -> None:
        for watcher in (self.reader, self.writer):
            if watcher is not None:
                watcher.stop()
                watcher.close()
        self.reader = self.writer = None
        self.sock.close()
        self.server.connections.discard(self)
