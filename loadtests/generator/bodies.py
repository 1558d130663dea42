"""Reading a body an answer carries: JSON that may be hostile, and the scalar texts surge records from it.

Whatever a body holds, reading it returns: a body nested past the parser's recursion limit or holding a number
longer than Python reads is "unreadable" (recorded as UNREADABLE_BODY), a body that is not JSON at all is simply
no document, and every text taken from it (a code, an id, a replica name) is capped, so that a server's megabyte
"code" never reaches the history, Locust's error table or the per-second counters.
"""

from __future__ import annotations

import json
from typing import Any, Final

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
