"""Requests built from a target profile's templates (docs/targets.md), signed when the profile says so.

Pure and light (no gevent, no Locust) so that rendering is a unit test. Every template is compiled once into a
list of literal strings and value slots; rendering a request is a join, not a regex, so the profile path costs
the generator about what the built-in path does.

Escaping depends on where a value lands: inside a JSON body each substituted value is JSON-string-escaped
(quotes, backslashes, control characters; non-ASCII kept as UTF-8), in a form body it is
application/x-www-form-urlencoded, in the path it is percent-encoded, in a header it is sent as is.
`${NAME}` is read from the environment when the compiled request is built in the Locust process.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

from loadtests.generator.bodies import resolve
from loadtests.scenario.credentials import Signer
from loadtests.scenario.profile import TargetProfile
from loadtests.scenario.profile_templates import FORM, FRESH, JSON, MESSAGE_ONLY, Segment, parse_pointer, parse_template


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
