"""A target profile's credentials inside a generator process: OAuth 2.0 client-credentials tokens, TLS refusals.

One `Tokens` per process serves every user. Its first token is fetched when the process's generator starts,
before t=0, never on an arrival's clock; a background greenlet fetches the next one `refresh_before_s` ahead
of `expires_in`, so sending never pauses for a refresh. An attempt never waits for the token endpoint, except
the rare attempt due before the very first fetch has answered. Without a usable token an attempt is not sent
and counts as AUTH_FAILED (TLS_FAILED when the endpoint refused our certificate). A 401 to a token that had
expired (or was about to: it was in its refresh window, or a newer one was already fetched) is that token's
end, not the credentials': the attempt is recorded as TOKEN_EXPIRED and re-sent once with a fresh token, the
same key (payer.py). So is a 401 to a token the target had accepted before: its clock may run ahead of ours.

The token endpoint is called with its own kept-alive connection (http1.py, the profile's [tls]); the client
secret and the tokens stay in this object, never logged: a failure is logged once by its status or error class.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import time
from collections import Counter
from collections.abc import Mapping
from http.client import HTTPException
from urllib.parse import quote_plus, urlsplit

import gevent
from gevent.event import Event

from loadtests.generator.http1 import Connections
from loadtests.scenario.profile_request import OAuth2Spec
from loadtests.scenario.profile_templates import expand_env
from runfolder.outcomes import AUTH_FAILED, TLS_FAILED

NO_ANSWER = (OSError, HTTPException, gevent.Timeout)  # as transport.py's, without importing Locust here
RETRY_S = 1.0  # a failed fetch is tried again this often, in the background
DEFAULT_EXPIRES_S = 3600.0  # a token answer without expires_in (RFC 6749 §5.1 makes it optional)
MIN_REFRESH_S = 0.5  # never refresh more often than this, whatever expires_in says
log = logging.getLogger("surge")


def tls_refused(error: BaseException | None, certificate_expired: bool = False) -> bool:
    """A TLS handshake that failed on a certificate — the server's unverifiable, or ours refused (expired,
    missing, from an unknown CA) — rather than on the service: the profile's [tls] is wrong.

    With TLS 1.3 the server checks our certificate after our side of the handshake is done, so its refusal may
    reach us only as the connection closing under the first request: when our certificate is known to have
    expired (`certificate_expired`), a connection closed without an answer is that refusal too."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return True
    reason = str(getattr(error, "reason", "") or "") if isinstance(error, ssl.SSLError) else ""
    if "CERTIFICATE" in reason or "UNKNOWN_CA" in reason:
        return True
    closed = isinstance(error, ConnectionError | HTTPException | ssl.SSLError)
    return certificate_expired and closed and not isinstance(error, TimeoutError)


def no_answer_code(error: BaseException | None, certificate_expired: bool = False) -> str | None:
    """TLS_FAILED for a handshake refused on a certificate; None for any other missing answer."""
    return TLS_FAILED if tls_refused(error, certificate_expired) else None


class Tokens:
    """The process's current access token, fetched and refreshed in the background."""

    def __init__(
        self,
        spec: OAuth2Spec,
        env: Mapping[str, str],
        *,
        timeout_s: float,
        tls_context: ssl.SSLContext | None,
        certificate_expired: bool = False,
    ) -> None:
        self.spec = spec
        self.certificate_expired = certificate_expired  # the profile's client certificate is past its end
        url = expand_env(spec.token_url, env)
        parts = urlsplit(url)
        self._path = parts.path or "/"
        if parts.query:
            self._path += f"?{parts.query}"
        self._connections = Connections(f"{parts.scheme}://{parts.netloc}", timeout_s, 1, tls_context=tls_context)
        client_id, secret = expand_env(spec.client_id, env), expand_env(spec.client_secret, env)
        form = {"grant_type": "client_credentials"}
        if spec.scope:
            form["scope"] = spec.scope
        self._headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        if spec.client_auth == "basic":  # RFC 6749 §2.3.1: both form-encoded, then Basic
            pair = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        else:
            form |= {"client_id": client_id, "client_secret": secret}
        self._form = "&".join(f"{quote_plus(name)}={quote_plus(value)}" for name, value in form.items()).encode()
        self.token = ""
        self.expires_at = 0.0  # unix time the current token stops being valid
        self._accepted = False  # the target accepted the current token at least once
        self.counts: Counter[str] = Counter()  # fetched, failed, renewed (after a 401)
        self.failure = ""  # why the last fetch failed (no secret in it)
        self.failure_code = AUTH_FAILED  # what an attempt without a token counts as: TLS_FAILED when TLS was refused
        self._first = Event()  # set once the first fetch answered (successfully or not)
        self._fresh = Event()  # set when a fetch completes; replaced before each fetch
        self._fetching = False
        self._stopped = False
        self._greenlet: gevent.Greenlet[[], None] | None = None

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._loop)

    def stop(self) -> None:
        self._stopped = True
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
        self._connections.close()

    def current(self, wait_s: float) -> str | None:
        """The valid token, or None (the attempt is AUTH_FAILED). Waits only while the first fetch is pending."""
        if not self._first.is_set():
            self._first.wait(wait_s)
        if self.token and time.time() < self.expires_at:
            return self.token
        return None

    def accepted(self, used: str) -> None:
        """The target answered a request carrying `used` with something other than 401/403."""
        if used == self.token:
            self._accepted = True

    def expired(self, used: str) -> bool:
        """Whether a 401 to `used` is that token's end rather than wrong credentials: it is no longer the current
        one, the target had accepted it before (it expired or was revoked on the server's clock, which may run
        ahead of ours), or it is within its refresh window."""
        return used != self.token or self._accepted or time.time() >= self.expires_at - self.spec.refresh_before_s

    def renew(self, used: str, wait_s: float) -> str | None:
        """After a 401 to an expired `used` token: a newer token, fetching one unless another fetch already
        did (one fetch however many attempts were refused at once)."""
        self.counts["renewed"] += 1
        if used == self.token:
            if self._fetching:
                self._fresh.wait(wait_s)
            else:
                self._fetch()
        return self.current(0.0)

    def _loop(self) -> None:
        while not self._stopped:
            if self._fetch():
                due = self.expires_at - self.spec.refresh_before_s
                gevent.sleep(max(MIN_REFRESH_S, due - time.time()))
            else:
                gevent.sleep(RETRY_S)

    def _fetch(self) -> bool:
        self._fetching = True
        fresh = self._fresh = Event()
        try:
            ok = self._ask()
        finally:
            self._fetching = False
            fresh.set()
            self._first.set()
        self.counts["fetched" if ok else "failed"] += 1
        return ok

    def _ask(self) -> bool:
        asked = time.time()
        try:
            response = self._connections.request("POST", self._path, self._form, dict(self._headers))
        except NO_ANSWER as exc:
            refused = tls_refused(exc, self.certificate_expired)
            self.failure_code = TLS_FAILED if refused else AUTH_FAILED
            return self._failed(f"no answer ({TLS_FAILED if refused else exc.__class__.__name__})")
        self.failure_code = AUTH_FAILED
        if response.status != 200:
            return self._failed(f"HTTP {response.status}")
        try:
            answer = json.loads(response.body)
            token = answer["access_token"]
            expires_in = float(answer.get("expires_in") or DEFAULT_EXPIRES_S)
        except (ValueError, KeyError, TypeError):
            return self._failed("an answer without access_token")
        if not isinstance(token, str) or not token:
            return self._failed("an answer without access_token")
        if not (token.isascii() and token.isprintable()):  # it goes into a header line as it is
            return self._failed("an access_token with characters a header cannot carry")
        self.token, self.expires_at, self._accepted = token, asked + expires_in, False
        if self.failure:
            log.warning("surge: the token endpoint answers again (after %s)", self.failure)
            self.failure = ""
        return True

    def _failed(self, why: str) -> bool:
        if why != self.failure:
            log.error("surge: token endpoint %s: %s; attempts without a valid token count AUTH_FAILED",
                      self.spec.token_url, why)  # fmt: skip
        self.failure = why
        return False
