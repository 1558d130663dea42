"""A target profile's request side: how one payment attempt is sent, signed, authorised and encrypted.

`[request]` with its templates and `[request.sign]`, `[auth.oauth2]` and `[tls]`. Header names and literal text
are checked against the HTTP grammar here (RFC 9110, RFC 9112), so that a profile can never make surge write a
second Host, a smuggled Transfer-Encoding or a control character onto the wire.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from loadtests.scenario.parts import Strict
from loadtests.scenario.profile_templates import (
    FIELD_VALUE,
    FORM,
    FRESH,
    MESSAGE_ONLY,
    NOTIFY_URL,
    PATH_TEXT,
    SURGE_OWNED_HEADERS,
    ProfileError,
    Segment,
    parse_pointer,
    parse_template,
)

HTTP_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
SignAlgorithm = Literal["hmac-sha256", "rsa-sha256", "ed25519", "python"]


class SignSpec(Strict):
    """How each attempt is signed: a canonical message, a key, and where the signature goes."""

    algorithm: SignAlgorithm
    """hmac-sha256 (a shared secret), rsa-sha256 (PKCS#1 v1.5 with a PEM RSA private key), ed25519 (a PEM
    Ed25519 private key) or python (`function` signs)."""
    key: str | None = None
    """The secret or PEM private key as `${NAME}` (read from the environment, never written to a file); or use
    `key_file`."""
    key_file: str | None = None
    """A file holding the secret or PEM private key (relative to the profile's folder)."""
    message: str
    """The canonical string signed: any placeholder, plus `{method}`, `{path}` (as sent, with the query) and
    `{body}` (as sent, without a `body_field` signature)."""
    encoding: Literal["base64", "hex"] = "base64"
    """How the signature bytes are written (not for algorithm python, whose function returns the text)."""
    header: str | None = None
    """Put the signature in this request header (header, body_field and query: each one given gets it)."""
    body_field: str | None = None
    """Put the signature into the body at this JSON pointer (a form body: one top-level field name as `/name`)."""
    query: str | None = None
    """Append the signature to the path as this query parameter."""
    function: str | None = None
    """algorithm python only: `module:function`, called (message: bytes, key: str) -> str, importable from the
    profile's folder or the Python path."""

    @model_validator(mode="after")
    def _consistent(self) -> SignSpec:
        places = [name for name in ("header", "body_field", "query") if getattr(self, name) is not None]
        if not places:
            raise ValueError("give 'header', 'body_field' or 'query': where the signature goes")
        if self.key is not None and self.key_file is not None:
            raise ValueError("give 'key' or 'key_file', not both")
        if self.algorithm != "python" and self.key is None and self.key_file is None:
            raise ValueError(f"algorithm {self.algorithm} needs its key: 'key' = \"${{NAME}}\" or 'key_file'")
        if (self.function is not None) != (self.algorithm == "python"):
            raise ValueError("'function' goes with algorithm = \"python\", and only with it")
        if self.function is not None and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", self.function):
            raise ValueError(f"'function' must be module:function (got {self.function!r})")
        if self.key is not None:
            segments = parse_template(self.key, "request.sign.key", frozenset())
            if not segments or any(kind != "env" for kind, _ in segments):
                raise ValueError("'key' must be ${NAME}: a secret is never written in the profile (or use key_file)")
        if self.header is not None and not HTTP_TOKEN.fullmatch(self.header):
            raise ValueError(f"header name {self.header!r} is not an HTTP token")
        if self.body_field is not None and not parse_pointer(self.body_field):
            raise ValueError("'body_field' must point into the body (a JSON pointer such as \"/sign\")")
        if self.query is not None and not self.query:
            raise ValueError("'query' must name the parameter")
        parse_template(self.message, "request.sign.message", FRESH | MESSAGE_ONLY)
        return self


class OAuth2Spec(Strict):
    """OAuth 2.0 client credentials (RFC 6749 §4.4): surge fetches a token and refreshes it ahead of expiry."""

    token_url: str = Field(pattern=r"^https?://")
    """The token endpoint (an http(s) URL; the loopback guard applies to it as to `base_url`)."""
    client_id: str = Field(min_length=1)
    """The client id; `${NAME}` expanded."""
    client_secret: str = Field(min_length=1)
    """The client secret, as `${NAME}` (never written to a file)."""
    scope: str = ""
    """The scope asked for (none when empty)."""
    client_auth: Literal["basic", "body"] = "basic"
    """How the client authenticates: HTTP Basic (RFC 6749 §2.3.1, every server supports it) or the form body."""
    refresh_before_s: float = Field(default=5.0, ge=0)
    """Fetch the next token this long before `expires_in` runs out, in the background."""

    @field_validator("client_secret")
    @classmethod
    def _secret_from_env(cls, value: str) -> str:
        segments = parse_template(value, "auth.oauth2.client_secret", frozenset())
        if any(kind != "env" for kind, _ in segments):
            raise ValueError("must be ${NAME}: a secret is never written in the profile")
        return value

    @field_validator("client_id", "token_url")
    @classmethod
    def _no_placeholders(cls, value: str) -> str:
        parse_template(value, "auth.oauth2", frozenset())
        return value


class AuthSpec(Strict):
    oauth2: OAuth2Spec | None = None
    """Client-credentials tokens, available to templates as {access_token}."""


class TlsSpec(Strict):
    """TLS of an https `base_url` (and token_url): whom to trust, and the client certificate for mutual TLS."""

    ca_file: str | None = None
    """PEM CA bundle the server's certificate is verified against (default: the system's)."""
    cert_file: str | None = None
    """PEM client certificate (chain) for mutual TLS."""
    key_file: str | None = None
    """PEM private key of `cert_file` (unencrypted; omit when cert_file holds it)."""
    verify: bool = True
    """Verify the server's certificate and host name; false only for a throwaway test server."""

    @model_validator(mode="after")
    def _pair(self) -> TlsSpec:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("'key_file' needs its 'cert_file'")
        return self


class RequestSpec(Strict):
    method: Literal["POST", "PUT", "PATCH", "GET", "DELETE"] = "POST"
    """The HTTP method of a payment request."""
    path: str = Field(pattern=r"^/")
    """The path under `base_url`; placeholders allowed (their values percent-encoded); its own text visible ASCII
    without `#` (no space, no control character)."""
    content_type: Literal["application/json", "application/x-www-form-urlencoded"] = "application/json"
    """How `body` is encoded, and so how each substituted value is escaped (JSON string or form encoding)."""
    body: str = ""
    """The body template: `{key}`, `{user_id}`, `{card_id}`, `{channel}`, `{amount_fen}`, `{amount_yuan}`,
    `{attempt}`, the per-attempt `{timestamp}`, `{timestamp_ms}`, `{nonce}`, `{uuid}`, `{access_token}`, and
    `${NAME}` (from the environment)."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Header name -> value template, e.g. the idempotency header `{key}` (the same on every retry). Not Host,
    Content-Type, Content-Length, Transfer-Encoding, Connection, Keep-Alive, TE, Trailer, Upgrade,
    Proxy-Connection or Expect (surge's own); no control character, in the text or in a ${NAME}'s value."""
    sign: SignSpec | None = None
    """Sign every attempt afresh (a retry keeps `{key}`, gets a new timestamp, nonce and signature)."""

    @model_validator(mode="after")
    def _templates_known(self) -> RequestSpec:
        templates = self.templates()
        for name in self.headers:
            if not HTTP_TOKEN.fullmatch(name):
                raise ValueError(f"header name {name!r} is not an HTTP token")
            if name.lower() in SURGE_OWNED_HEADERS:
                raise ProfileError(
                    f"request.headers.{name}: surge sets this header itself (Content-Type from request.content_type)"
                    " or it describes the connection's framing; remove it"
                )
            for kind, text in templates[f"header {name}"]:
                if kind == "text" and not FIELD_VALUE.fullmatch(text):
                    raise ProfileError(
                        f"request.headers.{name}: holds a control character (CR, LF, …) or a character outside Latin-1"
                    )
        for kind, text in templates["path"]:
            if kind == "text" and not PATH_TEXT.fullmatch(text):
                raise ProfileError(
                    "request.path: holds a space, a control character (CR, LF, …), '#' or a non-ASCII character;"
                    " percent-encode it"
                )
        sign = self.sign
        if sign is not None and sign.header is not None and sign.header.lower() in SURGE_OWNED_HEADERS:
            raise ValueError(f"sign.header: surge sets {sign.header} itself; name another header")
        if sign is not None and sign.body_field is not None:
            if self.content_type == FORM and len(parse_pointer(sign.body_field)) != 1:
                raise ValueError('sign.body_field: a form body takes one top-level field ("/name")')
            if not self.body:
                raise ValueError("sign.body_field: the request has no body to put the signature in")
        return self

    def templates(self) -> dict[str, tuple[Segment, ...]]:
        """Every template of the request by where it sits: "path", "body", "header X-Request-Id"."""
        found = {
            "path": parse_template(self.path, "request.path"),
            "body": parse_template(self.body, "request.body", FRESH | {NOTIFY_URL}),
        }
        for name, value in self.headers.items():
            found[f"header {name}"] = parse_template(value, f"request.headers.{name}")
        return found
