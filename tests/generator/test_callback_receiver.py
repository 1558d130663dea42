"""The callback receiver's HTTP/1.1 (loadtests/generator/receiver.py) over a real loopback socket, byte for byte: what
a sender may legally send (a Content-Length body, a chunked one, pipelined requests on one kept-alive connection,
HTTP/1.0) reaches the handler whole and in order, and what it may not (not HTTP, a body past the bound) is
refused and the connection closed. No gevent monkey-patching: server and client share gevent's hub in the
test's thread."""

from __future__ import annotations

import re
from collections.abc import Iterator

import gevent.socket
import pytest

from loadtests.generator import receiver
from loadtests.generator.receiver import Receiver

Call = tuple[str, str, str, bytes]


@pytest.fixture
def served() -> Iterator[tuple[Receiver, list[Call]]]:
    calls: list[Call] = []

    def handle(method: str, path: str, signature: str, body: bytes) -> tuple[str, bytes]:
        calls.append((method, path, signature, body))
        return ("200 OK", b"ok") if body != b"refuse" else ("500 Internal Server Error", b"")

    server = Receiver(handle, "Surge-Signature")
    server.start()
    yield server, calls
    server.stop()


def exchange(port: int, data: bytes) -> bytes:
    """Send `data`, then read until the server closes or 0.5 s pass without a byte."""
    sock = gevent.socket.create_connection(("127.0.0.1", port))
    sock.settimeout(0.5)
    sock.sendall(data)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except TimeoutError:
        pass
    sock.close()
    return got


def test_pipelined_requests_with_both_body_framings_are_answered_in_order(
    served: tuple[Receiver, list[Call]],
) -> None:
    server, calls = served
    one = (
        b"POST /surge/callback?x=1 HTTP/1.1\r\nHost: a\r\nsurge-SIGNATURE: sha256=ab\r\n"
        b'Content-Length: 7\r\n\r\n{"a":1}'
    )
    two = (
        b"POST /surge/callback HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nref\r\n3\r\nuse\r\n0\r\n\r\n"
    )
    three = b"GET /other HTTP/1.1\r\nHost: a\r\n\r\n"
    answer = exchange(server.port, one + two + three)
    assert calls == [
        ("POST", "/surge/callback", "sha256=ab", b'{"a":1}'),
        ("POST", "/surge/callback", "", b"refuse"),
        ("GET", "/other", "", b""),
    ]
    statuses = re.findall(rb"HTTP/1\.1 \d{3}[^\r]*", answer)
    assert statuses == [b"HTTP/1.1 200 OK", b"HTTP/1.1 500 Internal Server Error", b"HTTP/1.1 200 OK"]
    assert answer.startswith(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
    assert b"Connection: close" not in answer, "the connection is kept alive for the next delivery"


def test_a_request_split_across_reads_is_one_request(served: tuple[Receiver, list[Call]]) -> None:
    server, calls = served
    sock = gevent.socket.create_connection(("127.0.0.1", server.port))
    for piece in (b"POST /surge/call", b"back HTTP/1.1\r\nContent-Le", b"ngth: 4\r\n\r\nab", b"cd"):
        sock.sendall(piece)
        gevent.sleep(0.02)
    sock.settimeout(2)
    assert sock.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")
    sock.close()
    assert calls == [("POST", "/surge/callback", "", b"abcd")]


def test_http_1_0_is_answered_and_closed(served: tuple[Receiver, list[Call]]) -> None:
    server, calls = served
    answer = exchange(server.port, b"POST /surge/callback HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close\r\n" in answer
    assert calls == [("POST", "/surge/callback", "", b"hi")]


def test_bytes_that_are_not_http_are_refused_and_the_connection_closed(
    served: tuple[Receiver, list[Call]],
) -> None:
    server, calls = served
    answer = exchange(server.port, b"HELLO THERE\r\n\r\n")
    assert (
        answer
        == b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    assert calls == []


def test_a_body_past_the_bound_is_refused_not_buffered(
    served: tuple[Receiver, list[Call]], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, calls = served
    monkeypatch.setattr(receiver, "MAX_BODY_BYTES", 10)
    answer = exchange(server.port, b"POST /surge/callback HTTP/1.1\r\nContent-Length: 11\r\n\r\n" + b"x" * 11)
    assert answer.startswith(b"HTTP/1.1 413 Content Too Large\r\n") and b"Connection: close" in answer
    assert calls == []
