"""A target profile (docs/targets.md): how surge's payments map onto a repayment API that surge did not build.

Validated once, before anything starts, so that a mistake is one line and exit 2 (`ProfileError`): an unknown
key, an unknown `{placeholder}`, a JSON pointer that is not RFC 6901, a rule set with no 2xx success, a
non-loopback `base_url` without --allow-remote, or a `${NAME}` the environment does not hold.

Templates are parsed here into segments (`Template`); the generator renders them (loadtests.generator.templates).
`${NAME}` values are *not* expanded into the model: they are read from the environment by whoever renders, so
that a secret never sits in an object that could be dumped into the run folder.
"""

from __future__ import annotations

import re
import ssl
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from loadtests.errors import UsageError
from loadtests.scenario.credentials import CredentialError, Signer, client_context, make_signer
from loadtests.scenario.targets import check_target
from runfolder.models import TargetCaps, TargetMeta

PLACEHOLDERS = frozenset({"key", "user_id", "card_id", "channel", "amount_fen", "amount_yuan", "attempt"})
# Fresh on every attempt (a retry of a payment is signed afresh); {access_token} needs [auth.oauth2].
FRESH = frozenset({"timestamp", "timestamp_ms", "nonce", "uuid", "access_token"})
# Only inside [request.sign] message: the request as sent, the signature aside.
MESSAGE_ONLY = frozenset({"method", "path", "body"})
NOTIFY_URL = "notify_url"  # the request's placeholder for the callback receiver's URL (with [settle.callback])
POLL_PLACEHOLDERS = frozenset({"key", "payment_id"})
TOKEN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Header fields surge writes itself (Host from base_url, Content-Type from content_type, the body's length) or
# that describe the connection and its framing (RFC 9110 §7.6.1, RFC 9112 §6): a profile's copy would be a second
# Host or a Transfer-Encoding beside Content-Length, which a server or a proxy in front of it may read otherwise.
SURGE_OWNED_HEADERS = frozenset(
    {"host", "content-type", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer",
     "upgrade", "proxy-connection", "expect"}
)  # fmt: skip
# What a request line's target may hold as literal text: visible ASCII but `#` (RFC 9112 §3.2); a placeholder's
# or ${NAME}'s value is percent-encoded. A header value may hold visible characters, spaces and tabs (RFC 9110 §5.5).
PATH_TEXT = re.compile(r"[!-\"$-~]*")
FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
WHOLE_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
DATABASE_SCHEMES = frozenset({"postgresql", "postgres", "mysql", "sqlite"})
DEFAULT_LEDGER_TIMEOUT_S = 60.0
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
RuleOutcome = Literal["succeeded", "declined", "rate_limited", "shed", "error", "pending"]
SettleOutcome = Literal["succeeded", "declined", "pending"]
Scalar = str | int | float | bool | None


class ProfileError(UsageError):
    """A target profile that cannot be used: unreadable, or a bad or unknown key; nothing was started."""


# A template is literal text and substitutions: ("text", "…"), ("var", "user_id") or ("env", "ACME_TOKEN").
Segment = tuple[Literal["text", "var", "env"], str]


def parse_template(text: str, where: str, extra: frozenset[str] = FRESH) -> tuple[Segment, ...]:
    """Split `text` at `{placeholder}` and `${NAME}`; an unknown placeholder is a ProfileError naming it.
    `extra`: the placeholders allowed here beyond the payment's own."""
    known_here = PLACEHOLDERS | extra
    segments: list[Segment] = []
    last = 0
    for match in TOKEN.finditer(text):
        if match.start() > last:
            segments.append(("text", text[last : match.start()]))
        env, var = match.group(1), match.group(2)
        if env is not None:
            segments.append(("env", env))
        elif var in known_here:
            segments.append(("var", var))
        else:
            known = ", ".join(sorted(known_here))
            raise ProfileError(f"{where}: unknown placeholder {{{var}}} (known: {known}, or ${{NAME}})")
        last = match.end()
    if last < len(text):
        segments.append(("text", text[last:]))
    return tuple(segments)


def parse_pointer(pointer: str) -> tuple[str, ...]:
    """RFC 6901: "" is the whole document, else "/"-separated tokens with ~1 for "/" and ~0 for "~".

    Twelve lines instead of a dependency: the generator resolves these on every response, as plain tuple walks.
    """
    if pointer == "":
        return ()
    if not pointer.startswith("/"):
        raise ValueError(f"a JSON pointer must start with '/' (got {pointer!r})")
    if re.search(r"~(?![01])", pointer):
        raise ValueError(f"a JSON pointer may use '~' only as ~0 or ~1 (got {pointer!r})")
    return tuple(token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/"))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


HTTP_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
SignAlgorithm = Literal["hmac-sha256", "rsa-sha256", "ed25519", "python"]


class SignSpec(_Strict):
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


class OAuth2Spec(_Strict):
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


class AuthSpec(_Strict):
    oauth2: OAuth2Spec | None = None
    """Client-credentials tokens, available to templates as {access_token}."""


class TlsSpec(_Strict):
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


class RequestSpec(_Strict):
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


def _statuses(value: int | list[int]) -> tuple[int, ...]:
    statuses = (value,) if isinstance(value, int) else tuple(value)
    if not statuses or any(not 100 <= status <= 599 for status in statuses):
        raise ValueError(f"'status' must be HTTP statuses 100-599 (got {value})")
    return statuses


class _AnswerMatch(_Strict):
    """What an answer must show for a rule to match: status, `json` pointers and `headers`, all of them."""

    status: tuple[int, ...]
    """The HTTP status this rule is for: an int or a list of ints (100-599)."""
    json_: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict, alias="json")
    """RFC 6901 pointer -> the value (or list of values) the JSON body must hold there; all must match."""
    headers: dict[str, str | list[str]] = Field(default_factory=dict)
    """Header name -> the value (or list of values) it must have; all must match."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, use_attribute_docstrings=True)

    @field_validator("status", mode="before")
    @classmethod
    def _status_list(cls, value: Any) -> tuple[int, ...]:
        if isinstance(value, bool) or not isinstance(value, int | list):
            raise ValueError(f"'status' must be an int or a list of ints (got {value!r})")
        return _statuses(value)

    @field_validator("json_")
    @classmethod
    def _pointers(cls, value: dict[str, Any]) -> dict[str, Any]:
        for pointer in value:
            parse_pointer(pointer)
        return value


class ResponseRule(_AnswerMatch):
    """One rule: all of status, `json` pointers and `headers` must match; the first matching rule wins."""

    outcome: RuleOutcome
    """The class a matching answer counts as; it decides what the client does next (docs/targets.md §3)."""
    code: str = ""
    """The code recorded for a matching answer; SINGLE_/DAILY_LIMIT_EXCEEDED name the limit declines."""
    payment_id: str | None = None
    """A pointer to the target's own payment id in the body, kept in the history as `repayment_id`."""
    retry_after_header: str | None = None
    """The header holding Retry-After (delta-seconds or an HTTP date) that the client's retry waits out."""

    @field_validator("payment_id")
    @classmethod
    def _payment_pointer(cls, value: str | None) -> str | None:
        if value is not None:
            parse_pointer(value)
        return value


class LedgerCaps(_Strict):
    card_daily_fen: int | None = Field(default=None, gt=0)
    """A card's cap per business day, in fen, for every channel; unset: not checked."""
    user_daily_fen: int | None = Field(default=None, gt=0)
    """A user's cap per business day, in fen, over all cards; unset: not checked."""


class LedgerStatus(_Strict):
    """How the ledger query's `status` values map onto processing / succeeded / failed."""

    processing: list[Scalar] = Field(default_factory=list)
    """Values meaning the payment is not final yet."""
    succeeded: list[Scalar] = Field(default_factory=list)
    """Values meaning it settled (money moved)."""
    failed: list[Scalar] = Field(default_factory=list)
    """Values meaning it failed (no money)."""

    def state(self, value: Any) -> str:
        """processing / succeeded / failed of one `status` value; ValueError when the mapping lacks it."""
        for name in ("processing", "succeeded", "failed"):
            if value in getattr(self, name):
                return name
        raise ValueError(f"status {value!r} is not in [ledger.status]")


class LedgerSpec(_Strict):
    url: str = Field(min_length=1)
    """The database URL (postgresql://, mysql:// or sqlite:///); ${NAME} expanded (percent-encoded inside the URL,
    so a password may hold `@`, `/` or `?`; or the whole URL from one variable: `"${DATABASE_URL}"`); its password
    never written or printed."""
    query: str = Field(min_length=1)
    """One read-only SELECT returning `key`, `card_id`, `user_id`, `amount_fen`, `business_date` (and optionally
    `payment_id`, `channel`), run once after the load; no `;` but a trailing one."""
    timeout_s: float = Field(default=DEFAULT_LEDGER_TIMEOUT_S, gt=0, le=3600)
    """The longest the query may run (the database's statement timeout); past it the run ends with exit 3."""
    caps: LedgerCaps = LedgerCaps()
    """The caps over_cap is checked against; without any, over_cap is unknown."""
    status: LedgerStatus | None = None
    """With a `status` column in the query: which of its values mean processing, succeeded and failed (only
    succeeded rows are money); required when the query returns `status`, checked when the rows are read."""

    @field_validator("url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if not WHOLE_ENV.fullmatch(value.strip()):  # a URL from one variable is checked once expanded
            check_database_scheme(value)
        return value

    @field_validator("query")
    @classmethod
    def _one_statement(cls, value: str) -> str:
        return single_statement(value)


MAX_BODY_BYTES = 1 << 20  # the default bound on a response body the generator reads (a 1 MiB answer is absurd)


class Response(_Strict):
    rules: tuple[ResponseRule, ...] = Field(min_length=1)
    """Ordered rules: the first that matches classifies the answer; none matching is outcome `error`."""
    max_body_bytes: int = Field(default=MAX_BODY_BYTES, ge=1)
    """The largest response body read (1 MiB by default); a larger one, announced or streamed, makes the attempt
    outcome `error` with code RESPONSE_TOO_LARGE and closes its connection."""

    @model_validator(mode="after")
    def _success_rule(self) -> Response:
        if not any(rule.outcome == "succeeded" and any(200 <= s < 300 for s in rule.status) for rule in self.rules):
            raise ValueError("no rule maps a 2xx status to outcome 'succeeded': no payment could ever succeed")
        return self


class SettleRule(_AnswerMatch):
    """One rule of `[[settle.poll.rules]]`: status, `json` pointers and `headers` must all match; first wins."""

    outcome: SettleOutcome
    """What a matching status answer says: `succeeded`, `declined` (the payment failed) or still `pending`."""
    code: str = ""
    """The code recorded for a final state (e.g. the target's refusal code)."""


class SettlePoll(_Strict):
    """How the client asks a pending payment's state (`[client] settlement = "poll"`)."""

    method: Literal["GET", "POST"] = "GET"
    """The status request's method."""
    path: str = Field(pattern=r"^/")
    """The status path under `base_url`: `{payment_id}` (the id the pending rule read) and `{key}`."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Header name -> value template (`{payment_id}`, `{key}`, `${NAME}`)."""
    poll_after_ms: int = Field(default=500, ge=10, le=60_000)
    """The first wait after acceptance, and between polls unless the answer's Retry-After says otherwise."""
    rules: tuple[SettleRule, ...] = Field(min_length=1)
    """Ordered rules for the status answer; none matching counts as still pending."""

    def templates(self) -> dict[str, tuple[Segment, ...]]:
        found = {"path": parse_template(self.path, "settle.poll.path", POLL_PLACEHOLDERS)}
        for name, value in self.headers.items():
            if name.lower() in SURGE_OWNED_HEADERS:
                raise ProfileError(f"settle.poll.headers.{name}: surge sets this header itself; remove it")
            found[f"header {name}"] = parse_template(value, f"settle.poll.headers.{name}", POLL_PLACEHOLDERS)
        return found

    @model_validator(mode="after")
    def _valid(self) -> SettlePoll:
        self.templates()
        if not any(rule.outcome != "pending" for rule in self.rules):
            raise ValueError("no rule maps a status answer to 'succeeded' or 'declined': nothing could ever settle")
        return self


class SettleCallback(_Strict):
    """What the target POSTs to `{notify_url}` (`[client] settlement = "callback"`)."""

    key: str
    """JSON pointer to the payment's idempotency key (`{key}` of the request) in the delivered body."""
    status: str
    """JSON pointer to its state in the delivered body."""
    succeeded: Scalar | list[Scalar]
    """The value(s) at `status` meaning the payment succeeded."""
    failed: Scalar | list[Scalar]
    """The value(s) at `status` meaning it failed; any other value is not final (acknowledged, nothing learned)."""
    code: str | None = None
    """JSON pointer to a failure code in the delivered body (optional)."""
    ack_status: int = Field(default=200, ge=200, le=299)
    """The status the receiver answers a delivery it takes."""
    ack_body: str = ""
    """The body it answers with (e.g. `{"received": true}` or `success`)."""
    signature_header: str | None = None
    """The header carrying the HMAC-SHA256 (hex) of the body; unset: deliveries are not signed (not verified)."""
    signature_prefix: str = ""
    """Text before the hex digest in that header (e.g. `sha256=`)."""
    secret: str = ""
    """The HMAC key, usually `${NAME}` from the environment; required with `signature_header`."""

    @model_validator(mode="after")
    def _valid(self) -> SettleCallback:
        for pointer in (self.key, self.status, *([self.code] if self.code is not None else [])):
            parse_pointer(pointer)
        if self.signature_header is not None and not self.secret:
            raise ValueError("signature_header needs secret (the HMAC key, e.g. ${NOTIFY_SECRET})")
        return self


class SettleSpec(_Strict):
    poll: SettlePoll | None = None
    """The status request and its rules."""
    callback: SettleCallback | None = None
    """The callback's format and the acknowledgement."""


class TargetProfile(_Strict):
    name: str = Field(min_length=1)
    """The target's name, shown in the report and the console."""
    base_url: str
    """Scheme, host and port of the API; `--host` overrides it; loopback only unless `--allow-remote`."""
    request: RequestSpec
    """How one payment attempt is sent."""
    response: Response
    """How an answer is read."""
    ledger: LedgerSpec | None = None
    """What the target recorded, for the money invariants; without it they are unknown."""
    auth: AuthSpec = AuthSpec()
    """How surge obtains credentials ([auth.oauth2])."""
    tls: TlsSpec = TlsSpec()
    """TLS settings for https: the CA to verify against, a client certificate."""
    settle: SettleSpec | None = None
    """How a payment answered `pending` learns its final state: `[settle.poll]` and/or `[settle.callback]`."""

    @model_validator(mode="after")
    def _token_known(self) -> TargetProfile:
        if self.auth.oauth2 is None:
            sources = [*self.request.templates().items()]
            if self.request.sign is not None:
                sources.append(("sign.message", parse_template(self.request.sign.message, "", FRESH | MESSAGE_ONLY)))
            for where, segments in sources:
                if ("var", "access_token") in segments:
                    raise ValueError(f"request {where}: {{access_token}} needs an [auth.oauth2] section")
        return self

    @model_validator(mode="after")
    def _settlement_consistent(self) -> TargetProfile:
        pending = [rule for rule in self.response.rules if rule.outcome == "pending"]
        settle = self.settle or SettleSpec()
        if pending and settle.poll is None and settle.callback is None:
            raise ProfileError("a response rule has outcome 'pending' but neither [settle.poll] nor [settle.callback]")
        if any(rule.payment_id is None for rule in pending) and settle.poll is not None:
            raise ProfileError("a response rule with outcome 'pending' needs payment_id (the id [settle.poll] asks)")
        uses_notify = any(kind == "var" and value == NOTIFY_URL for kind, value in self.request.templates()["body"])
        if uses_notify and settle.callback is None:
            raise ProfileError("request.body: {notify_url} needs [settle.callback] (the format the target posts)")
        if settle.callback is not None and not uses_notify:
            raise ProfileError("[settle.callback]: request.body has no {notify_url} placeholder to tell the target")
        return self

    def env_names(self) -> list[str]:
        """Every ${NAME} the profile reads from the environment, in order of appearance."""
        names: list[str] = []
        sources = [*self.request.templates().values()]
        sign = self.request.sign
        if sign is not None:
            sources.append(parse_template(sign.message, "request.sign.message", FRESH | MESSAGE_ONLY))
            if sign.key is not None:
                sources.append(parse_template(sign.key, "request.sign.key"))
        oauth2 = self.auth.oauth2
        if oauth2 is not None:
            for value in (oauth2.token_url, oauth2.client_id, oauth2.client_secret):
                sources.append(parse_template(value, "auth.oauth2", frozenset()))
        if self.ledger is not None:
            sources.append(parse_template(self.ledger.url, "ledger.url"))
        if self.settle is not None and self.settle.poll is not None:
            sources += list(self.settle.poll.templates().values())
        if self.settle is not None and self.settle.callback is not None:
            sources.append(parse_template(self.settle.callback.secret, "settle.callback.secret"))
        for segments in sources:
            names += [value for kind, value in segments if kind == "env" and value not in names]
        return names


def check_settlement(profile: TargetProfile, mode: str) -> None:
    """ProfileError unless the scenario's `[client] settlement` can watch what the profile's rules leave
    pending: `poll` needs `[settle.poll]`, `callback` needs `[settle.callback]`."""
    pending = any(rule.outcome == "pending" for rule in profile.response.rules)
    settle = profile.settle or SettleSpec()
    if pending and mode == "poll" and settle.poll is None:
        raise ProfileError('[client] settlement = "poll" but the profile has no [settle.poll]')
    if pending and mode == "callback" and settle.callback is None:
        raise ProfileError('[client] settlement = "callback" but the profile has no [settle.callback]')
    if mode != "callback" and settle.callback is not None:
        raise ProfileError('the profile\'s [settle.callback] needs [client] settlement = "callback" ({notify_url})')


def load_profile(
    path: Path | str, *, allow_remote: bool, host: str | None = None, env: Mapping[str, str] | None = None
) -> TargetProfile:
    """Read and validate a profile; `host` (--host) overrides `base_url`, which the loopback guard checks.

    `env` (default: none checked) is the environment the run will have: each ${NAME} must be set in it.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"target profile {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"target profile {path}: invalid TOML ({exc})") from None
    if host is not None:
        data["base_url"] = host
    try:
        profile = TargetProfile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(f"target profile {path}: {_first_error(exc)}") from None
    except ProfileError as exc:
        raise ProfileError(f"target profile {path}: {exc}") from None
    try:
        base_url = check_target(profile.base_url, allow_remote=allow_remote)
    except UsageError as exc:
        raise ProfileError(f"target profile {path}: base_url: {str(exc).removeprefix('--host ')}") from None
    oauth2 = profile.auth.oauth2
    if oauth2 is not None and "${" not in oauth2.token_url:
        try:
            check_target(oauth2.token_url, allow_remote=allow_remote)
        except UsageError as exc:
            why = str(exc).removeprefix("--host ")
            raise ProfileError(f"target profile {path}: auth.oauth2.token_url: {why}") from None
    profile = _files_resolved(profile.model_copy(update={"base_url": base_url}), path.parent)
    if env is not None:
        missing = [name for name in profile.env_names() if name not in env]
        if missing:
            raise ProfileError(f"target profile {path}: ${{{missing[0]}}} is not set in the environment")
        for name, value in profile.request.headers.items():  # sent as they are: the rest are escaped where they land
            for kind, variable in parse_template(value, f"request.headers.{name}"):
                if kind == "env" and not FIELD_VALUE.fullmatch(env[variable]):
                    raise ProfileError(
                        f"target profile {path}: request.headers.{name}: ${{{variable}}} holds a control character"
                        " (CR, LF, …) or a character outside Latin-1"
                    )
        whole = WHOLE_ENV.fullmatch(profile.ledger.url.strip()) if profile.ledger is not None else None
        if whole:
            try:
                check_database_scheme(env.get(whole.group(1), ""))
            except ValueError:  # its value may be a secret: never shown
                raise ProfileError(
                    f"target profile {path}: ledger.url: ${{{whole.group(1)}}} does not hold a postgresql://, "
                    "mysql:// or sqlite:/// URL"
                ) from None
        try:
            signer(profile, env, path.parent)
            if uses_tls(profile):
                tls_context(profile, ssl.SSLContext)
        except CredentialError as exc:
            raise ProfileError(f"target profile {path}: {exc}") from None
    return profile


def _files_resolved(profile: TargetProfile, folder: Path) -> TargetProfile:
    """key_file and the [tls] files relative to the profile's folder, as a payment engineer writes them."""

    def resolved(name: str | None) -> str | None:
        return None if name is None else str(folder / Path(name).expanduser())

    sign = profile.request.sign
    if sign is not None and sign.key_file is not None:
        sign = sign.model_copy(update={"key_file": resolved(sign.key_file)})
        profile = profile.model_copy(update={"request": profile.request.model_copy(update={"sign": sign})})
    tls = profile.tls
    files = {name: resolved(getattr(tls, name)) for name in ("ca_file", "cert_file", "key_file")}
    return profile.model_copy(update={"tls": tls.model_copy(update=files)})


def signer(profile: TargetProfile, env: Mapping[str, str], folder: Path | None) -> Signer | None:
    """The profile's request signer (None without [request.sign]); CredentialError when it cannot be made.
    `folder`: where a python `function`'s module may live (the profile's folder)."""
    sign = profile.request.sign
    if sign is None:
        return None
    return make_signer(
        sign.algorithm,
        key=sign.key,
        key_file=sign.key_file,
        encoding=sign.encoding,
        function=sign.function,
        env=env,
        search=folder,
    )


def uses_tls(profile: TargetProfile) -> bool:
    """Whether the profile talks https (base_url or token_url) or names TLS files."""
    tls, oauth2 = profile.tls, profile.auth.oauth2
    urls = [profile.base_url] if oauth2 is None else [profile.base_url, oauth2.token_url]
    return any(url.startswith("https:") for url in urls) or any((tls.ca_file, tls.cert_file, tls.key_file))


def tls_context(profile: TargetProfile, factory: type[ssl.SSLContext]) -> ssl.SSLContext:
    """The client TLS context of the profile's [tls] (verification on by default)."""
    tls = profile.tls
    return client_context(
        ca_file=tls.ca_file, cert_file=tls.cert_file, key_file=tls.key_file, verify=tls.verify, factory=factory
    )


def _first_error(exc: ValidationError) -> str:
    """One line naming the key: "request.bodyy: unknown key" rather than pydantic's multi-line report."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"] if part != "json_") or "profile"
    where = where.replace("json_", "json")
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    if error["type"] == "missing":
        return f"{where}: required key missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}"


def check_database_scheme(url: str) -> None:
    """ValueError unless `url` is a postgresql://, mysql:// or sqlite:/// URL."""
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme not in DATABASE_SCHEMES:
        raise ValueError(f"'url' must be a postgresql://, mysql:// or sqlite:/// URL (got scheme {scheme!r})")


def single_statement(query: str) -> str:
    """`query` without its trailing `;`; ValueError if a `;` is left, since a `;` could end the SELECT and start
    a write (`SELECT …; COMMIT; DROP TABLE …`). No SQL is parsed: a `;` inside a string literal or a comment is
    refused too (write it as CHR(59))."""
    statement = query.strip().rstrip(";").rstrip()
    if ";" in statement:
        raise ValueError("one statement only: the query holds a ';' before its end")
    if not statement:
        raise ValueError("the query is empty")
    return statement


def expand_url(url: str, env: Mapping[str, str]) -> str:
    """A database URL with ${NAME} expanded: a variable that is the whole URL as it is, one inside the URL
    percent-encoded, so that a password holding `@`, `:`, `/`, `?` or `#` stays the password (the URL parser
    decodes it) instead of splitting the URL and showing half of itself where the password is masked."""
    whole = WHOLE_ENV.fullmatch(url.strip())
    if whole:
        return env.get(whole.group(1), "")
    return TOKEN.sub(
        lambda match: quote(env.get(match.group(1), ""), safe="") if match.group(1) else match.group(0), url
    )


def expand_env(text: str, env: Mapping[str, str]) -> str:
    """`text` with each ${NAME} replaced from `env` (placeholders in `{…}` are left alone)."""
    return TOKEN.sub(lambda match: env.get(match.group(1), "") if match.group(1) else match.group(0), text)


def target_meta(profile: TargetProfile, path: Path | str, channels: list[str]) -> TargetMeta:
    """meta.json's `target`: what the reports need (name, caps, the channels cards were drawn on), and nothing
    secret — no header values, no body, no ledger URL."""
    caps = None if profile.ledger is None else TargetCaps(**profile.ledger.caps.model_dump())
    return TargetMeta(
        name=profile.name,
        profile=str(path),
        base_url=profile.base_url,
        ledger=profile.ledger is not None,
        caps=caps,
        channels=channels,
    )
