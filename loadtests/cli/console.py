"""The consoles surge writes to: a terminal, or a log (a CI job, a file, a pipe) that must read top to bottom.

A terminal gets rich's own width and a status line redrawn in place. A log has no right edge and keeps every
byte: rich would wrap a table at its default 80 columns (a verdict row split over two lines reads as two rows)
and a redrawn status line would leave carriage returns, or only its last state, in the log. So a log gets
tables at their natural width and the status as one plain line every few seconds.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.live import Live
from rich.text import Text

LOG_WIDTH = 200  # wide enough for every table surge prints; a log wraps nothing
LOG_STATUS_EVERY_S = 5.0


def console(*, stderr: bool = False, highlight: bool = True) -> Console:
    """A Console on stdout (or stderr): the terminal's width, or LOG_WIDTH when it writes to a log."""
    probe = Console(stderr=stderr)
    return Console(stderr=stderr, highlight=highlight, width=None if probe.is_terminal else LOG_WIDTH)


@contextlib.contextmanager
def status_line(out: Console, every_s: float = LOG_STATUS_EVERY_S) -> Iterator[Callable[[str], None]]:
    """Yields `show(text)`: on a terminal the one status line redrawn in place; on a log a plain line when the
    text first changes and then at most every `every_s` seconds, and the last state once more at the end (so
    the log's last status line is the run's last second)."""
    if out.is_terminal:
        with Live(Text(""), console=out, refresh_per_second=2) as display:
            yield lambda text: display.update(Text(text))
        return
    state = _LogStatus(out, every_s)
    try:
        yield state.show
    finally:
        state.flush()


class _LogStatus:
    """The status line as plain log lines (status_line)."""

    def __init__(self, out: Console, every_s: float) -> None:
        self.out, self.every_s = out, every_s
        self.printed, self.latest, self.at = "", "", float("-inf")

    def show(self, text: str) -> None:
        self.latest = text
        now = time.monotonic()
        if text != self.printed and now - self.at >= self.every_s:
            self._print(text)
            self.at = now

    def flush(self) -> None:
        if self.latest and self.latest != self.printed:
            self._print(self.latest)

    def _print(self, text: str) -> None:
        self.out.print(text, markup=False, highlight=False, soft_wrap=True)
        self.printed = text
