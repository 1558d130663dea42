"""User-controlled text on a console (a scenario name in a meta.json from elsewhere, a fault's output, a
database error): one line, control characters escaped, no `::` that GitHub Actions could read as a command."""

from __future__ import annotations

import pytest

from errortext.console_text import one_line

HOSTILE = "x\n::error title=INJ::forged\r\x1b[2J\x85\u2028end"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (HOSTILE, "x\\n: :error title=INJ: :forged\\r\\x1b[2J\\x85\\u2028end"),
        ("::add-mask::secret", ": :add-mask: :secret"),
        ("a:::b", "a: : :b"),
        ("tab\there\x00", "tab\\there\\x00"),
        ("http://[::1]:8080/v1 and [fe80::1]", "http://[::1]:8080/v1 and [fe80::1]"),
        ("双十一 12:30", "双十一 12:30"),
    ],
)
def test_one_line_escapes_controls_and_breaks_up_workflow_commands(text: str, shown: str) -> None:
    assert one_line(text) == shown
