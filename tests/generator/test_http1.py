"""The generator's HTTP/1.1 connections (loadtests/generator/http1.py), black-box against scripted servers.

Each server is a real socket in a thread that answers with exactly the bytes a case needs — the shapes a
gateway or a team's own service may send (chunked, read-until-close, interim 1xx, Connection: close, cut off,
not HTTP) — and records every request it read, so the promises are checked from the server's side: a request
is never sent twice, a connection the server closed while idle is replaced before sending, the timeout bounds
the whole attempt. No gevent monkey-patching: the client runs on gevent's hub in the test's thread.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.client import HTTPException
from pathlib import Path

import pytest

from loadtests.generator.http1 import Connections, ProtocolError, TooLarge

Handler = Callable[[socket.socket, "Server"], None]
Connect = Callable[..., Connections]


class Server:
    """Accepts connections on a loopback port; `handler(conn, server)` answers each (in its own thread)."""

    def __init__(self, handler: Handler, wrap: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.wrap = wrap
        self.requests: list[bytes] = []  # every request head + body read, in order
        self.connections = 0
        self.closed = 0  # connections this side has closed
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            if self.wrap is not None:
                conn = self.wrap.wrap_socket(conn, server_side=True)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                self.handler(conn, self)
        except OSError:
            pass
        finally:
            self.closed += 1

    def read_request(self, conn: socket.socket) -> bytes | None:
        """One request (head and Content-Length body), recorded; None when the client closed."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            body += conn.recv(65536)
        self.requests.append(head + b"\r\n\r\n" + body)
        return head

    def close(self) -> None:
        self.sock.close()


@contextmanager
def serving(handler: Handler, wrap: ssl.SSLContext | None = None) -> Iterator[Server]:
    server = Server(handler, wrap)
    try:
        yield server
    finally:
        server.close()


def answering(*replies: bytes | list[bytes], close: bool = False) -> Handler:
    """Each request on a connection gets the next reply (a list: parts sent 50 ms apart); close after them
    (or after each reply when `close`)."""

    def handler(conn: socket.socket, server: Server) -> None:
        for reply in replies:
            if server.read_request(conn) is None:
                return
            for part in reply if isinstance(reply, list) else [reply]:
                conn.sendall(part)
                if isinstance(reply, list):
                    time.sleep(0.05)
            if close:
                return
        server.read_request(conn)  # hold the connection until the client is done with it

    return handler


@pytest.fixture
def connect() -> Iterator[Connect]:
    """Connections(url, timeout_s) whose idle sockets are closed after the test."""
    made: list[Connections] = []

    def make(url: str, timeout_s: float = 2.0) -> Connections:
        made.append(Connections(url, timeout_s, 8))
        return made[-1]

    yield make
    for connections in made:
        connections.close()


CREATED = b'HTTP/1.1 201 Created\r\nContent-Length: 15\r\nX-Replica: r1\r\n\r\n{"status":"ok"}'


def test_a_response_is_read_by_its_length_and_the_connection_is_reused(connect: Connect) -> None:
    with serving(answering(CREATED, CREATED)) as server:
        connections = connect(f"http://127.0.0.1:{server.port}/base", 2.0)
        first = connections.request("POST", "/v1/repayments", b'{"a":1}', {"Idempotency-Key": "k1"})
        second = connections.request("POST", "/v1/repayments", b'{"a":2}', {"Idempotency-Key": "k2"})
    assert (first.status, first.body) == (201, b'{"status":"ok"}')
    assert second.status == 201
    assert first.headers.get("x-replica") == first.headers["X-REPLICA"] == "r1" and "X-Replica" in first.headers
    assert server.connections == 1, "a kept-alive connection serves the next request"
    head = server.requests[0].split(b"\r\n")
    assert head[0] == b"POST /base/v1/repayments HTTP/1.1", "the base path prefixes the request path"
    assert f"Host: 127.0.0.1:{server.port}".encode() in head
    assert b"Idempotency-Key: k1" in head and b"Content-Length: 7" in head
    assert server.requests[1].endswith(b'{"a":2}')


def test_chunked_read_until_close_and_interim_answers_are_decoded(connect: Connect) -> None:
    chunked = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nx-a: 2\r\n\r\n5\r\nhel", b"lo\r\n0\r\n\r\n"]
    until_close = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it"
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 409 Conflict\r\nContent-Length: 2\r\n\r\nno"
    with serving(answering(chunked)) as one, serving(answering(until_close, close=True)) as two:
        reply = connect(f"http://127.0.0.1:{one.port}", 2.0).request("GET", "/", b"", {})
        assert (reply.status, reply.body, reply.headers.get("X-A")) == (200, b"hello", "1, 2")
        reply = connect(f"http://127.0.0.1:{two.port}", 2.0).request("GET", "/", b"", {})
        assert (reply.status, reply.body) == (200, b"all of it")
    with serving(answering(interim)) as three:
        reply = connect(f"http://127.0.0.1:{three.port}", 2.0).request("POST", "/", b"{}", {})
        assert (reply.status, reply.body) == (409, b"no")


@pytest.mark.parametrize(
    "reply",
    [b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", b"SSH-2.0-OpenSSH_9.2\r\n", b""],
    ids=["cut-off", "not-http", "closed-without-answer"],
)
def test_no_complete_answer_is_an_error_and_the_post_is_never_sent_again(reply: bytes, connect: Connect) -> None:
    with serving(answering(reply, reply, close=True)) as server:
        connections = connect(f"http://127.0.0.1:{server.port}", 2.0)
        with pytest.raises((HTTPException, OSError)):
            connections.request("POST", "/v1/repayments", b"{}", {"Idempotency-Key": "k"})
    assert len(server.requests) == 1, "a POST is sent once, whatever went wrong after"


def test_a_connection_the_server_closed_while_idle_is_replaced_before_sending(connect: Connect) -> None:
    keep_alive_then_close = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"  # no Connection: close
    with serving(answering(keep_alive_then_close, close=True)) as server:
        connections = connect(f"http://127.0.0.1:{server.port}", 2.0)
        assert connections.request("POST", "/", b"{}", {"Idempotency-Key": "a"}).status == 201
        deadline = time.monotonic() + 5
        while server.closed < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.closed == 1, "the server closed its end of the idle connection"
        assert connections.request("POST", "/", b"{}", {"Idempotency-Key": "b"}).status == 201
    assert server.connections == 2
    assert [request.split(b"Idempotency-Key: ")[1][:1] for request in server.requests] == [b"a", b"b"]


def test_a_large_body_on_a_kept_alive_connection_waits_for_a_slow_reader(connect: Connect) -> None:
    """The pooled connection's liveness peek leaves it non-blocking; the send must still wait, within the
    attempt's timeout, for a server that reads slowly."""

    def slow_reader(conn: socket.socket, server: Server) -> None:
        server.read_request(conn)
        conn.sendall(CREATED)
        time.sleep(0.3)  # the client's 4 MiB fill the socket buffers meanwhile
        server.read_request(conn)
        conn.sendall(CREATED)
        server.read_request(conn)

    with serving(slow_reader) as server:
        connections = connect(f"http://127.0.0.1:{server.port}", 5.0)
        assert connections.request("POST", "/", b"{}", {}).status == 201
        assert connections.request("POST", "/", b"x" * (4 << 20), {}).status == 201
    assert server.connections == 1 and len(server.requests[1]) > 4 << 20


def test_connection_close_is_honoured(connect: Connect) -> None:
    closing = b"HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    with serving(answering(closing, close=True)) as server:
        connections = connect(f"http://127.0.0.1:{server.port}", 2.0)
        for key in "abc":
            assert connections.request("POST", "/", b"{}", {"Idempotency-Key": key}).status == 201
    assert server.connections == 3 and len(server.requests) == 3


def test_the_timeout_bounds_the_whole_attempt_not_each_read(connect: Connect) -> None:
    def trickle(conn: socket.socket, server: Server) -> None:
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(100):  # a byte every 50 ms: each read is quick, the answer never ends in time
            conn.sendall(b"x")
            time.sleep(0.05)

    with serving(trickle) as server:
        connections = connect(f"http://127.0.0.1:{server.port}", 0.5)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            connections.request("GET", "/", b"", {})
        took = time.monotonic() - started
    assert took < 2.5, f"a 0.5 s attempt timeout ended the attempt after {took:.2f} s"


def test_a_refused_connection_raises_and_a_header_that_would_split_the_head_sends_nothing(connect: Connect) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        connect(f"http://127.0.0.1:{port}", 1.0).request("GET", "/", b"", {})
    with serving(answering(CREATED)) as server:
        connections = connect(f"http://127.0.0.1:{server.port}", 1.0)
        with pytest.raises(ValueError):
            connections.request("POST", "/", b"{}", {"X-Key": "k\r\nX-Injected: 1"})
    assert server.requests == [] and server.connections == 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificate")
def test_https_with_a_self_signed_certificate(tmp_path: Path, connect: Connect) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with serving(answering(CREATED, CREATED), wrap=context) as server:
        connections = connect(f"https://127.0.0.1:{server.port}", 5.0)
        assert connections.request("POST", "/", b"{}", {}).body == b'{"status":"ok"}'
        assert connections.request("POST", "/", b"{}", {}).status == 201
    assert server.connections == 1


@pytest.mark.parametrize(
    ("first", "after", "status", "body"),
    [
        (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", CREATED, 503, b""),
        (CREATED, b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n", 201, b'{"status":"ok"}'),
        (CREATED, b"HTTP/1.1 100 Continue\r\n\r\n", 201, b'{"status":"ok"}'),
    ],
    ids=["503-then-201", "201-then-500", "201-then-100-continue"],
)
def test_bytes_after_the_first_complete_answer_are_nobodys_answer(
    first: bytes, after: bytes, status: int, body: bytes, connect: Connect
) -> None:
    """One segment holding a whole answer and then more: the attempt's status, header fields and body are the
    first answer's, and the connection that carried the extra bytes is never used again — the next attempt
    gets a new connection and its own answer, not the leftover."""

    def first_connection_doubled(conn: socket.socket, server: Server) -> None:
        doubled = server.connections == 1
        while server.read_request(conn) is not None:
            conn.sendall(first + after if doubled else CREATED)
            doubled = False

    with serving(first_connection_doubled) as server:
        connections = connect(f"http://127.0.0.1:{server.port}", 2.0)
        reply = connections.request("POST", "/v1/repayments", b"{}", {"Idempotency-Key": "a"})
        assert (reply.status, reply.body) == (status, body)
        assert reply.headers["Content-Length"] == str(len(body)), "no header field of the second message merged"
        following = connections.request("POST", "/v1/repayments", b"{}", {"Idempotency-Key": "b"})
    assert (following.status, following.body) == (201, b'{"status":"ok"}')
    assert server.connections == 2, "the connection with bytes after its answer was closed, not reused"


def test_a_status_outside_100_to_599_is_a_protocol_error_at_once(connect: Connect) -> None:
    """`HTTP/1.1 000` is no interim answer to wait past: the attempt fails now, not at its timeout."""
    with serving(answering(b"HTTP/1.1 000\r\n\r\n")) as server:
        connections = connect(f"http://127.0.0.1:{server.port}", 5.0)
        started = time.monotonic()
        with pytest.raises(ProtocolError, match="000"):
            connections.request("POST", "/", b"{}", {})
        took = time.monotonic() - started
    assert took < 2.0, f"a status 000 ended the attempt after {took:.2f} s"


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 201 Created\r\nContent-Length: 100000000000\r\n\r\n",
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 201 Created\r\nX-Padding: " + b"p" * (200 << 10),
    ],
    ids=["content-length-100-GB", "chunked-without-end", "endless-head"],
)
def test_a_body_past_the_bound_fails_the_attempt_and_closes_the_connection(head: bytes, connect: Connect) -> None:
    """A body (announced or streamed) past `max_body`, or a head past MAX_HEAD_BYTES: TooLarge, at once —
    not at the timeout — and the connection closed, so the next attempt gets a new one."""
    chunk = b"x" * 65536

    def huge(conn: socket.socket, server: Server) -> None:
        server.read_request(conn)
        conn.sendall(head)
        chunked = b"chunked" in head
        for _ in range(2000):  # up to 128 MiB, as long as the client reads
            conn.sendall(b"10000\r\n" + chunk + b"\r\n" if chunked else chunk)

    with serving(huge) as server:
        connections = Connections(f"http://127.0.0.1:{server.port}", 10.0, 8, max_body=256 << 10)
        started = time.monotonic()
        with pytest.raises(TooLarge):
            connections.request("POST", "/", b"{}", {})
        took = time.monotonic() - started
        deadline = time.monotonic() + 10
        while server.closed < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.closed == 1, "the server's send failed: the client closed the connection"
        connections.close()
    assert took < 5.0, f"the attempt ended after {took:.2f} s, not when its bound was passed"


# The peak is VmHWM, this process's own: getrusage's ru_maxrss survives execve, so it would carry the pytest
# worker's peak (which forked it) into the figure.
LARGE_BODY_CLIENT = """
import sys
from loadtests.generator.http1 import Connections, TooLarge
def peak_kib():
    with open("/proc/self/status") as status:
        return next(line.split()[1] for line in status if line.startswith("VmHWM:"))
connections = Connections(sys.argv[1], 20.0, 8)
try:
    connections.request("GET", "/", b"", {})
    print("answered", peak_kib())
except TooLarge:
    print("too-large", peak_kib())
"""


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_300_mb_body_leaves_the_generators_memory_where_it_was(chunked: bool, tmp_path: Path) -> None:
    """The default bound (1 MiB) in a process of its own: a 300 MB answer (with its length announced, or
    chunked) is refused, and the process's peak RSS stays within tens of MB."""
    block = b"y" * (1 << 20)

    def large(conn: socket.socket, server: Server) -> None:
        server.read_request(conn)
        if chunked:
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(300):
                conn.sendall(b"100000\r\n" + block + b"\r\n")
            conn.sendall(b"0\r\n\r\n")
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (300 << 20))
            for _ in range(300):
                conn.sendall(block)

    root = Path(__file__).resolve().parents[2]
    with serving(large) as server:
        result = subprocess.run(
            [sys.executable, "-c", LARGE_BODY_CLIENT, f"http://127.0.0.1:{server.port}"],
            capture_output=True, text=True, timeout=60, cwd=root,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    outcome, peak_kib = result.stdout.split()
    assert outcome == "too-large"
    assert int(peak_kib) < 150 << 10, f"peak RSS {int(peak_kib) >> 10} MiB for a refused 300 MB answer"
