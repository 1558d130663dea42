"""The generator's OAuth2 client-credentials tokens (loadtests/generator/auth.py) against a real token endpoint in
a thread: fetched once up front, refreshed ahead of expiry in the background, renewed once after a 401 to an
expired token however many attempts saw it, and a failing endpoint said once, without the secret. No gevent
monkey-patching: the client runs on gevent's hub in the test's thread."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import gevent
import pytest

from loadtests.generator.auth import Tokens, tls_refused
from loadtests.scenario.profile_request import OAuth2Spec
from tests.support.procs import free_port

SECRET = "client-secret-31f9"


class TokenServer(ThreadingHTTPServer):
    expires_in = 2
    issued: list[str]
    down = False


class Handler(BaseHTTPRequestHandler):
    server: TokenServer

    def do_POST(self) -> None:
        form = dict(parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode()))
        basic = base64.b64decode(self.headers["Authorization"].removeprefix("Basic ")).decode()
        if form.get("grant_type") != "client_credentials" or basic != f"surge:{SECRET}" or self.server.down:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        token = f"t{len(self.server.issued)}"
        self.server.issued.append(token)
        body = json.dumps({"access_token": token, "token_type": "Bearer", "expires_in": self.server.expires_in})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[TokenServer]:
    server = TokenServer(("127.0.0.1", 0), Handler)
    server.issued = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def tokens_for(url: str, refresh_before_s: float = 1.0) -> Tokens:
    spec = OAuth2Spec(token_url=url, client_id="surge", client_secret="${SECRET}", refresh_before_s=refresh_before_s)
    return Tokens(spec, {"SECRET": SECRET}, timeout_s=2.0, tls_context=None)


def url_of(server: TokenServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/oauth/token"


def test_fetched_up_front_and_refreshed_before_expiry_without_a_gap(endpoint: TokenServer) -> None:
    tokens = tokens_for(url_of(endpoint))
    tokens.start()
    try:
        assert tokens.current(2.0) == "t0"
        seen = set()
        deadline = time.time() + 3.5  # 1.75 lifetimes of 2 s, refreshed 1 s early: ~every second
        while time.time() < deadline:
            token = tokens.current(0.0)
            assert token is not None  # never a moment without a valid token
            seen.add(token)
            gevent.sleep(0.05)
        assert len(seen) >= 3 and tokens.counts["fetched"] == len(endpoint.issued)
    finally:
        tokens.stop()


def test_a_401_to_an_expired_token_renews_once(endpoint: TokenServer) -> None:
    endpoint.expires_in = 60
    tokens = tokens_for(url_of(endpoint), refresh_before_s=0.0)
    tokens.start()
    try:
        first = tokens.current(2.0)
        assert first == "t0" and not tokens.expired("t0")  # valid by our clock: a 401 to it is the credentials'
        tokens.expires_at = time.time() - 1  # the server says it expired
        assert tokens.expired("t0")
        renewed = [tokens.renew("t0", 2.0) for _ in range(3)]  # three attempts refused at once
        assert renewed == ["t1", "t1", "t1"] and endpoint.issued == ["t0", "t1"]
        assert tokens.counts["renewed"] == 3
    finally:
        tokens.stop()


def test_a_refusing_or_missing_endpoint_means_no_token_and_is_said_once_without_the_secret(
    endpoint: TokenServer, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint.down = True
    caplog.set_level(logging.ERROR, logger="surge")
    for url in (url_of(endpoint), f"http://127.0.0.1:{free_port()}/oauth/token"):
        tokens = tokens_for(url)
        tokens.start()
        try:
            assert tokens.current(2.0) is None
            gevent.sleep(1.2)  # tried again in the background
            assert tokens.counts["failed"] >= 2 and tokens.failure_code == "AUTH_FAILED"
        finally:
            tokens.stop()
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2 and "HTTP 401" in lines[0] and "ConnectionRefusedError" in lines[1]
    assert all(SECRET not in line for line in lines)


def test_only_a_certificate_failure_is_a_tls_refusal() -> None:
    import ssl

    expired = ssl.SSLError(1, "[SSL: SSLV3_ALERT_CERTIFICATE_EXPIRED] sslv3 alert certificate expired")
    expired.reason = "SSLV3_ALERT_CERTIFICATE_EXPIRED"  # type: ignore[misc]
    assert tls_refused(expired)
    assert tls_refused(ssl.SSLCertVerificationError(1, "certificate verify failed"))
    assert not tls_refused(ConnectionResetError())
    assert tls_refused(ConnectionResetError(), certificate_expired=True)  # TLS 1.3: refused after our handshake
    assert not tls_refused(TimeoutError(), certificate_expired=True)
