"""Requests built from a target profile's templates, and answers classified by its ordered rules (docs/targets.md).

Pure and light (no gevent, no Locust) so that rendering and rule matching are unit tests. Every template is
compiled once into a list of literal strings and value slots; rendering a request is a join, not a regex,
so the profile path costs the generator about what the built-in path does.

Escaping depends on where a value lands: inside a JSON body each substituted value is JSON-string-escaped
(quotes, backslashes, control characters; non-ASCII kept as UTF-8), in a form body it is
application/x-www-form-urlencoded, in the path it is percent-encoded, in a header it is sent as is.
`${NAME}` is read from the environment when the compiled request is built in the Locust process.

Whatever an answer's body holds, classifying it returns: a body that cannot be read (`read_json`) is no JSON,
so no `json` rule matches it and the status (and header fields) alone decide, with UNREADABLE_BODY as the code
recorded unless the rule that matched names one; a Retry-After is clamped (policy.MAX_WAIT_S).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, quote_plus

from loadtests.generator.policy import header_seconds
from loadtests.scenario.credentials import Signer
from loadtests.scenario.profile import (
    FORM,
    FRESH,
    JSON,
    MESSAGE_ONLY,
    ResponseRule,
    Segment,
    SettlePoll,
    SettleRule,
    TargetProfile,
    parse_pointer,
    parse_template,
)
from reports.runfolder import UNAUTHORIZED, OutcomeClass, classify

MISSING = object()
UNREADABLE_BODY: Final = "UNREADABLE_BODY"  # the code of an answer whose JSON body could not be held
MAX_TEXT_CHARS: Final = 200  # of a code, an id or a replica name taken from an answer


def read_json(content: bytes) -> tuple[Any, bool]:
    """The JSON document a body holds, and whether the body was JSON that could not be read: nested deeper than
    the parser's recursion limit, or a number longer than Python reads (4,300 digits). A body that is not JSON
    at all (HTML from a proxy, plain text) is (None, False), as before: nothing unusual to record."""
    try:
        return json.loads(content), False
    except RecursionError:
        return None, True
    except (json.JSONDecodeError, UnicodeDecodeError):  # before ValueError, their base: plainly not JSON
        return None, False
    except ValueError:  # int(): "Exceeds the limit (4300 digits) for integer string conversion"
        return None, True


def scalar_text(value: Any) -> str:
    """A JSON scalar as the text recorded, at most MAX_TEXT_CHARS of it; an object or array (a field a target
    filled with anything) is "". The cap keeps a server's megabyte "code" or "replica" out of every history row,
    Locust's error table and the per-second counters, which keep one entry per distinct text."""
    if type(value) is str:  # the common case first: this runs for every field of every answer read
        return value if len(value) <= MAX_TEXT_CHARS else value[:MAX_TEXT_CHARS]
    if value is None or isinstance(value, (dict, list)):
        return ""
    return str(value)[:MAX_TEXT_CHARS]


@dataclass(frozen=True, slots=True)
class Values:
    """What a payment attempt fills into the templates."""

    key: str
    user_id: str
    card_id: str
    channel: str
    amount_fen: int
    attempt: int
    notify_url: str = ""  # the callback receiver's URL ({notify_url}, with [settle.callback])
    payment_id: str = ""  # the target's own id of a pending payment ({payment_id} of [settle.poll])

    def get(self, name: str) -> str:
        if name == "amount_yuan":
            return f"{self.amount_fen // 100}.{self.amount_fen % 100:02d}"
        return str(getattr(self, name))


_PER_ATTEMPT = FRESH | MESSAGE_ONLY  # filled from the attempt's own dict, not from its Values
NO_FRESH: Mapping[str, str] = {}


class _RandomPool:
    """Random bytes from the OS read 4 KiB at a time: one getrandom call per 256 nonces rather than one per
    attempt (2 µs each). Refilled in a forked child, so that two processes never hand out the same bytes."""

    __slots__ = ("_at", "_bytes", "_pid")

    def __init__(self) -> None:
        self._bytes, self._at, self._pid = b"", 0, 0

    def hex16(self) -> str:
        if self._at + 16 > len(self._bytes) or self._pid != os.getpid():
            self._bytes, self._at, self._pid = os.urandom(4096), 0, os.getpid()
        start = self._at
        self._at = start + 16
        return self._bytes[start : start + 16].hex()


_RANDOM = _RandomPool()


def fresh_values(names: frozenset[str], access_token: str) -> dict[str, str]:
    """One attempt's own values, one clock reading for all of them (the body's and the message's timestamp agree)."""
    now = time.time()
    fresh = {"access_token": access_token}
    if "timestamp" in names:
        fresh["timestamp"] = str(int(now))
    if "timestamp_ms" in names:
        fresh["timestamp_ms"] = str(int(now * 1000))
    if "nonce" in names:
        fresh["nonce"] = _RANDOM.hex16()
    if "uuid" in names:
        fresh["uuid"] = str(uuid.uuid4())
    return fresh


def json_escape(value: str) -> str:
    """The inside of a JSON string literal holding `value`."""
    return json.dumps(value, ensure_ascii=False)[1:-1]


class CompiledTemplate:
    """Literal parts with value slots between them; `env` values are fixed (escaped) at compile time."""

    __slots__ = ("_parts", "_slots", "names", "uses_attempt")

    def __init__(self, segments: tuple[Segment, ...], escape: Callable[[str], str], env: Mapping[str, str]) -> None:
        parts: list[str] = [""]
        slots: list[str] = []
        for kind, value in segments:
            if kind == "text":
                parts[-1] += value
            elif kind == "env":
                parts[-1] += escape(env.get(value, ""))
            else:
                slots.append(value)
                parts.append("")
        self._parts = tuple(parts)
        self._slots = tuple((slot, escape, slot in _PER_ATTEMPT) for slot in slots)
        self.uses_attempt = "attempt" in slots
        self.names = frozenset(slots)

    def render(self, values: Values, fresh: Mapping[str, str] = NO_FRESH) -> str:
        """`fresh`: this attempt's {timestamp}, {nonce}, … (and, in a signed message, {method} {path} {body})."""
        parts = self._parts
        if not self._slots:
            return parts[0]
        out = [parts[0]]
        for index, (slot, escape, per_attempt) in enumerate(self._slots, start=1):
            out.append(escape(fresh.get(slot, "") if per_attempt else values.get(slot)))
            out.append(parts[index])
        return "".join(out)


@dataclass(frozen=True, slots=True)
class BuiltRequest:
    method: str
    path: str
    body: str
    headers: dict[str, str]


class RequestBuilder:
    """A profile's request, compiled; `build` renders one attempt, signed when the profile says so."""

    def __init__(
        self, profile: TargetProfile, env: Mapping[str, str] | None = None, signer: Signer | None = None
    ) -> None:
        env = os.environ if env is None else env
        spec = profile.request
        templates = spec.templates()
        body_escape = json_escape if spec.content_type == JSON else quote_plus
        self.method = spec.method
        self.name = spec.path  # Locust's request name: the template, not every rendered path
        self._path = CompiledTemplate(templates["path"], lambda text: quote(text, safe=""), env)
        self._body = CompiledTemplate(templates["body"], body_escape, env)
        self._headers = {name: CompiledTemplate(templates[f"header {name}"], str, env) for name in spec.headers}
        self._content_type = FORM if spec.content_type == FORM else JSON
        compiled = (self._path, self._body, *self._headers.values())
        self.uses_attempt = any(template.uses_attempt for template in compiled)
        self._sign = spec.sign if signer is not None else None
        self._signer = signer
        self._sign_header = None if self._sign is None else self._sign.header
        self._sign_query = None if self._sign is None or self._sign.query is None else quote(self._sign.query, safe="")
        field = None if self._sign is None else self._sign.body_field
        self._sign_field = None if field is None else parse_pointer(field)
        self._message: CompiledTemplate | None = None
        sources = list(templates.values())
        if self._sign is not None:
            segments = parse_template(self._sign.message, "request.sign.message", FRESH | MESSAGE_ONLY)
            self._message = CompiledTemplate(segments, str, env)
            compiled = (*compiled, self._message)
            sources.append(segments)
            if self._sign.key is not None:
                sources.append(parse_template(self._sign.key, "request.sign.key", frozenset()))
        self._fresh = frozenset().union(*(template.names for template in compiled)) & FRESH
        # a signature is new on every attempt, and so is anything drawn fresh: rebuild each retry
        self.per_attempt = self.uses_attempt or self._signer is not None or bool(self._fresh)
        # every `${NAME}` value the requests carry or sign with (a token, a key): never written into a sample
        self.secrets = tuple(
            sorted(
                {env.get(name, "") for segments in sources for kind, name in segments if kind == "env"} - {""},
                key=len,
                reverse=True,
            )
        )

    def build(self, values: Values, access_token: str = "") -> BuiltRequest:
        """One attempt's request; `access_token` fills {access_token}. A signer's exception propagates (the
        caller records the attempt as SIGN_FAILED)."""
        fresh = fresh_values(self._fresh, access_token) if self._fresh else {}
        headers = {"Content-Type": self._content_type}
        for name, template in self._headers.items():
            headers[name] = template.render(values, fresh)
        path, body = self._path.render(values, fresh), self._body.render(values, fresh)
        if self._signer is not None:
            path, body = self._signed(values, fresh, path, body, headers)
        return BuiltRequest(self.method, path, body, headers)

    def _signed(
        self, values: Values, fresh: dict[str, str], path: str, body: str, headers: dict[str, str]
    ) -> tuple[str, str]:
        """The signature over the message, placed where [request.sign] says (header, body field or query)."""
        signer, message = self._signer, self._message
        assert signer is not None and message is not None
        fresh["method"], fresh["path"], fresh["body"] = self.method, path, body
        signature = signer(message.render(values, fresh).encode())
        if self._sign_header is not None:
            headers[self._sign_header] = signature
        if self._sign_query is not None:
            path = f"{path}{'&' if '?' in path else '?'}{self._sign_query}={quote(signature, safe='')}"
        if self._sign_field is not None:
            body = with_field(body, self._sign_field, signature, form=self._content_type == FORM)
        return path, body


def with_field(body: str, tokens: tuple[str, ...], value: str, *, form: bool) -> str:
    """`body` with `value` set at the pointer: a JSON body re-encoded compactly (UTF-8 kept), a form body with
    the field appended. The server removes the field and checks the signature over what is left."""
    if form:
        return f"{body}{'&' if body else ''}{quote_plus(tokens[0])}={quote_plus(value)}"
    document = json.loads(body)
    parent = resolve(document, tokens[:-1])
    if not isinstance(parent, dict):
        raise ValueError(f"sign.body_field: no JSON object at /{'/'.join(tokens[:-1])} of the body")
    parent[tokens[-1]] = value
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Classified:
    """An answer in surge's terms: the outcome class, the code recorded, Retry-After (s) and the target's id."""

    outcome: OutcomeClass
    code: str
    retry_after_s: float | None
    payment_id: str
    unmatched: bool = False  # no rule of the profile matched: outcome `error`, code HTTP_<status>
    pending: bool = False  # a rule said `pending`: accepted, its final state learned later (outcome `succeeded`)


def resolve(document: Any, tokens: tuple[str, ...]) -> Any:
    """The value at a parsed JSON pointer, or MISSING."""
    for token in tokens:
        if isinstance(document, dict):
            if token not in document:
                return MISSING
            document = document[token]
        elif isinstance(document, list):
            if not token.isdigit() or int(token) >= len(document):
                return MISSING
            document = document[int(token)]
        else:
            return MISSING
    return document


def _same(found: Any, wanted: Any) -> bool:
    """JSON equality without Python's True == 1: a rule for `true` does not match the number 1."""
    return isinstance(found, bool) is isinstance(wanted, bool) and found == wanted


class _CompiledRule:
    __slots__ = ("code", "headers", "json", "outcome", "payment_id", "pending", "retry_after_header", "statuses")

    def __init__(self, rule: ResponseRule | SettleRule) -> None:
        self.statuses = frozenset(rule.status)
        self.json = tuple(
            (parse_pointer(pointer), tuple(wanted) if isinstance(wanted, list) else (wanted,))
            for pointer, wanted in rule.json_.items()
        )
        self.headers = tuple(
            (name, tuple(wanted) if isinstance(wanted, list) else (wanted,)) for name, wanted in rule.headers.items()
        )
        self.pending = rule.outcome == "pending"
        self.outcome: OutcomeClass = "succeeded" if rule.outcome == "pending" else rule.outcome
        self.code = rule.code
        pointer = rule.payment_id if isinstance(rule, ResponseRule) else None
        self.payment_id = None if pointer is None else parse_pointer(pointer)
        self.retry_after_header = rule.retry_after_header if isinstance(rule, ResponseRule) else None

    def matches(self, status: int, body: Any, headers: Mapping[str, str]) -> bool:
        if status not in self.statuses:
            return False
        for tokens, wanted in self.json:
            found = resolve(body, tokens)
            if found is MISSING or not any(_same(found, value) for value in wanted):
                return False
        for name, values in self.headers:
            value = headers.get(name)
            if value is None or value not in values:
                return False
        return True


class Classifier:
    """The profile's ordered rules; the first that matches decides, none matching is outcome `error`."""

    def __init__(self, profile: TargetProfile) -> None:
        self._rules = tuple(_CompiledRule(rule) for rule in profile.response.rules)
        self._needs_body = any(rule.json or rule.payment_id is not None for rule in self._rules)

    def classify(
        self, status: int, content: bytes | None, headers: Mapping[str, str], now: float | None = None
    ) -> Classified:
        """`status` 0: no response (timeout or connection error, named by the caller)."""
        body: Any = None
        unreadable = False
        if self._needs_body and content:
            body, unreadable = read_json(content)
        for rule in self._rules:
            if rule.matches(status, body, headers):
                found = MISSING if rule.payment_id is None else resolve(body, rule.payment_id)
                wait = None
                if rule.retry_after_header is not None:
                    wait = header_seconds(headers.get(rule.retry_after_header), now)
                code = rule.code or (UNREADABLE_BODY if unreadable else "")
                paid = "" if found is MISSING else scalar_text(found)
                return Classified(rule.outcome, code, wait, paid, pending=rule.pending)
        if status in (401, 403):  # the credentials, not the service: kept apart in the report (UNAUTHORIZED)
            return Classified("error", UNAUTHORIZED, None, "", unmatched=True)
        return Classified("error", UNREADABLE_BODY if unreadable else f"HTTP_{status}", None, "", unmatched=True)


def no_response(code: str) -> Classified:
    """No usable answer: `code` TIMEOUT, CONNECTION_ERROR or RESPONSE_TOO_LARGE, whatever the profile's rules."""
    return Classified(classify(0, code), code, None, "")


SAMPLE_CHARS: Final = 300  # of an answer no rule matched, what the run folder keeps to show the user


def answer_sample(status: int, content: bytes | None, secrets: tuple[str, ...]) -> dict[str, Any]:
    """An answer no response rule matched, as `unmatched.json` keeps it: its status and the start of its body
    (SAMPLE_CHARS, decoded leniently), with every secret value the requests carry replaced — a target that
    echoes a request's token back must not put it in a run folder."""
    text = (content or b"")[: SAMPLE_CHARS * 4].decode("utf-8", "replace")
    for secret in secrets:
        text = text.replace(secret, "[secret]")
    return {
        "status": status,
        "body": text[:SAMPLE_CHARS],
        "cut": len(text) > SAMPLE_CHARS or len(content or b"") > SAMPLE_CHARS * 4,
    }


class StatusPoll:
    """`[settle.poll]` compiled: the status request of a pending payment and the reading of its answer."""

    def __init__(self, spec: SettlePoll, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        templates = spec.templates()
        self.method = spec.method
        self.name = spec.path
        self.first_wait_s = spec.poll_after_ms / 1000.0
        self._path = CompiledTemplate(templates["path"], lambda text: quote(text, safe=""), env)
        self._headers = {name: CompiledTemplate(templates[f"header {name}"], str, env) for name in spec.headers}
        self._rules = tuple(_CompiledRule(rule) for rule in spec.rules)

    def request(self, values: Values) -> tuple[str, str, dict[str, str]]:
        headers = {name: template.render(values) for name, template in self._headers.items()}
        return self.method, self._path.render(values), headers

    def read(self, status: int, content: bytes | None, headers: Mapping[str, str]) -> tuple[str, str]:
        """("succeeded" | "failed" | "" while pending or unmatched, the code)."""
        body, _ = read_json(content) if content else (None, False)
        for rule in self._rules:
            if rule.matches(status, body, headers):
                if rule.pending:
                    return "", ""
                return ("succeeded" if rule.outcome == "succeeded" else "failed"), rule.code
        return "", ""


class TargetApi:
    """A profile compiled for the generator: the request builder and the classifier of its answers."""

    def __init__(
        self, profile: TargetProfile, env: Mapping[str, str] | None = None, signer: Signer | None = None
    ) -> None:
        self.profile = profile
        self.builder = RequestBuilder(profile, env, signer)
        self.classifier = Classifier(profile)
        self.uses_attempt = self.builder.per_attempt
        poll = profile.settle.poll if profile.settle is not None else None
        self.poll = None if poll is None else StatusPoll(poll, env)
