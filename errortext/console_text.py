"""Text from a scenario, a profile, a run folder or a database, made safe to print on a console or in a CI log.

Such text is user-controlled: a scenario named `"x\n::error title=INJ::…"` printed as is starts a line that
GitHub Actions reads as a workflow command (a forged annotation, or `::add-mask::`, `::stop-commands::`), and an
ANSI escape can rewrite the terminal. `one_line` is the one place that makes it harmless, used wherever such text
meets a console: control characters (C0, DEL, C1, the Unicode line and paragraph separators) are shown as
backslash escapes, so the text stays on one line, and no `::` is left that could begin a line — a console
may wrap a long line anywhere — except inside a bracketed IPv6 literal (`[::1]`), which cannot hold a command.
Rich markup is a separate concern: escape it as well where the text goes through rich's markup parser.
"""

from __future__ import annotations

import re
from typing import Final

_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_COLONS_OR_IPV6: Final = re.compile(r"(\[[0-9A-Fa-f:.]*\])|::+")


def one_line(text: object) -> str:
    """`text` as one printable line: control characters escaped, `::` broken up (`: :`)."""
    escaped = _CONTROL.sub(_escape, str(text))
    return _COLONS_OR_IPV6.sub(_colons, escaped)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def _colons(match: re.Match[str]) -> str:
    return match.group(1) or " ".join(match.group())
