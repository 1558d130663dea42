"""One shape for what pydantic found wrong, wherever a file, a flag or a request body is validated.

Pydantic's own report is a multi-line table; a user wants one line naming the key, in the shape attrs' validators
use: "'limits.user_tps' must be > 0 (got -5)", "unknown key 'duraton_s'", "missing key 'duration_s'". The key is
pydantic's location, dotted: "rate.2.per_s" is `per_s` of the third `[[rate]]` row. An unknown key is told first,
because a typo (`duraton_s`) also makes the real key missing, and the unknown one is the line to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def describe(exc: ValidationError, keys: Mapping[str, str] | None = None) -> str:
    """The first problem as one line, "(and N more)" when there are others: they are told once it is fixed.

    `keys` renames a key as the user wrote it (a command-line option for a field: "--slo-success")."""
    errors = exc.errors()
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    line = _line(error, keys or {})
    if error["type"] in ("extra_forbidden", "missing") or len(errors) == 1:
        return line
    return f"{line} (and {len(errors) - 1} more)"


def describe_each(exc: ValidationError) -> list[tuple[str, str]]:
    """Every problem as (key, line), for an answer that lists them all (a problem+json `errors` array)."""
    return [(key_of(error) or "body", _line(error, {})) for error in exc.errors()]


def key_of(error: ErrorDetails) -> str:
    """Where one error is: pydantic's location, dotted ("channels.0.tps"; "" for the whole input)."""
    return ".".join(str(part) for part in error["loc"])


def _line(error: ErrorDetails, keys: Mapping[str, str]) -> str:
    key = key_of(error)
    key = keys.get(key, key)
    kind, got = error["type"], error.get("input")
    if kind == "extra_forbidden":
        return f"unknown key '{key}'"
    if kind == "missing":
        return f"missing key '{key}'"
    if kind in BOUNDS:
        bound = next(iter((error.get("ctx") or {}).values()))
        shown = int(bound) if isinstance(bound, float) and bound.is_integer() else bound
        return f"'{key}' must be {BOUNDS[kind]} {shown} (got {got!r})"
    text = str(error["msg"]).removeprefix("Value error, ").replace("Input should be", "must be", 1)
    if text[:1].isupper() and text[1:2].islower():
        text = text[0].lower() + text[1:]
    if _worth_showing(text, got):
        text = f"{text} (got {got!r})"
    if not key:
        return text  # a check of the whole input names its own keys
    return f"'{key}' {text}" if text.startswith("must ") else f"'{key}': {text}"


def _worth_showing(text: str, got: Any) -> bool:
    """Whether the value is worth repeating: not when the message shows it already, nor a whole table or list."""
    return "(got " not in text and not isinstance(got, dict | list | tuple)
