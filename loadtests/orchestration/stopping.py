"""Ctrl-C and CI cancellation of a surge command: the first SIGINT/SIGTERM stops cleanly, a second hurries.

One `Interrupt` per command is installed around the whole command by the shared skeleton
(`session.stoppable`, used by `surge run` and `surge find-capacity`) and passed down to every load it starts:

- first signal: `requested` — the running Locust is asked to stop (stop.json written, then Locust's SIGTERM:
  no new arrival, attempts in flight finish within a bounded grace, last windows written), the fault player
  undoes what it injected, the cluster stops, and the run folder and report are written as far as the run got;
  a command running several loads starts no further one and keeps the ones that finished;
- second signal: `hurry` — every process surge started is killed at once, no report; the folder keeps what
  was written so far; once the load is over (`after_load`), a signal ends the command at once, without report.

Exit code 130 for SIGINT, 143 for SIGTERM (128 + the signal's number, what shells and CI runners expect).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from runfolder.stop import StoppedBy, StopRecord, write_stop
from runfolder.verdict import ExitCode

REASONS: dict[int, tuple[StoppedBy, str]] = {
    signal.SIGINT: ("sigint", "interrupted (SIGINT, Ctrl-C)"),
    signal.SIGTERM: ("sigterm", "terminated (SIGTERM, e.g. a cancelled CI job)"),
}


class Interrupted(Exception):
    """Raised to unwind a command that runs several loads once a stop was requested."""


class StoppedBySignal(KeyboardInterrupt):
    """A command that runs several commands in turn (`surge study`) stops because one of them was stopped by
    a signal and has written what it could: the caller exits `exit_code` (130 SIGINT, 143 SIGTERM)."""

    def __init__(self, by: StoppedBy) -> None:
        super().__init__(by)
        self.exit_code = ExitCode.SIGTERM if by == "sigterm" else ExitCode.SIGINT


class Interrupt:
    """The signals a command received; `installed()` routes SIGINT and SIGTERM here for its duration."""

    def __init__(self) -> None:
        self.by: StoppedBy | None = None
        self.reason = ""
        self.at_unix = 0.0
        self.hurry = False
        self._load_over = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    @property
    def requested(self) -> bool:
        return self.by is not None

    @property
    def exit_code(self) -> int:
        return ExitCode.SIGTERM if self.by == "sigterm" else ExitCode.SIGINT

    @contextmanager
    def installed(self) -> Iterator[Interrupt]:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in REASONS}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def record(self, start_unix: float) -> StopRecord:
        """The stop as the run folder keeps it, for a run whose t=0 is `start_unix`."""
        assert self.by is not None
        return StopRecord(
            at_unix=self.at_unix, at_s=round(self.at_unix - start_unix, 3), by=self.by, reason=self.reason
        )

    def write(self, run_dir: Path, start_unix: float) -> StopRecord:
        return write_stop(run_dir, self.record(start_unix))

    async def wait(self, timeout_s: float) -> None:
        """Sleep up to `timeout_s`, waking at once on a signal (call from the event loop's thread)."""
        if self._wake is None or self._loop is not asyncio.get_running_loop():
            self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout_s)
        except TimeoutError:
            return
        self._wake = asyncio.Event()

    def after_load(self) -> None:
        """Every process the command started has stopped: from now on a signal skips the report."""
        self._load_over = True

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._load_over:
            print("\nsurge: stopped before the report was written", file=sys.stderr, flush=True)
            by = self.by or REASONS[signum][0]
            raise SystemExit(ExitCode.SIGTERM if by == "sigterm" else ExitCode.SIGINT)
        if self.by is None:
            self.by, self.reason = REASONS[signum]
            self.at_unix = time.time()
            print(
                f"\nsurge: {self.reason}: stopping the load and writing the report (again to skip it)",
                file=sys.stderr,
                flush=True,
            )
        else:
            self.hurry = True
            print("\nsurge: stopping every process now, without a report", file=sys.stderr, flush=True)
        if self._loop is not None and self._wake is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)
