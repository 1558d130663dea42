"""The little languages of a target profile: `{placeholder}` / `${NAME}` templates and RFC 6901 pointers.

A template is parsed once, when the profile is validated, into segments the generator renders on every attempt
(loadtests.generator.templates); an unknown placeholder is a `ProfileError` naming it, before anything starts.
`${NAME}` values are *not* expanded into the models: whoever renders reads them from the environment, so that a
secret never sits in an object that could be dumped into the run folder.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from loadtests.errors import UsageError

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
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
Scalar = str | int | float | bool | None  # a value a rule or a status mapping compares with


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


def expand_env(text: str, env: Mapping[str, str]) -> str:
    """`text` with each ${NAME} replaced from `env` (placeholders in `{…}` are left alone)."""
    return TOKEN.sub(lambda match: env.get(match.group(1), "") if match.group(1) else match.group(0), text)
