"""`action = "exec"` faults (CONTRACT §7): a team's own command at the fault's time, its undo after duration_s.

argv lists only, never a shell, so a profile cannot smuggle in `; rm -rf`. Each command is bounded by its
`timeout_s` and killed past it. What happened becomes events: `fault_injected` (the command exited 0),
`fault_cleared` (the undo exited 0) and `fault_failed` (non-zero, not runnable or timed out) — a run with a
failed fault exits 3, because the fault the scenario promised was not played.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import time
from collections.abc import Callable, Sequence

from loadtests.orchestration.chaos import ChaosEvent
from loadtests.scenario.shapes import Fault

DETAIL_CHARS = 200


class ExecPlayer:
    """Runs each exec fault at `start_unix + at_s` and its undo `duration_s` later, in time order."""

    def __init__(
        self, faults: Sequence[Fault], start_unix: float, on_event: Callable[[ChaosEvent], None] | None = None
    ) -> None:
        self.faults = [fault for fault in faults if fault.action == "exec"]
        self.start_unix = start_unix
        self.on_event = on_event
        self.events: list[ChaosEvent] = []

    async def play(self) -> None:
        steps: list[tuple[float, bool, Fault]] = []
        for fault in self.faults:
            steps.append((fault.at_s, False, fault))
            if fault.undo:
                steps.append((fault.at_s + fault.duration_s, True, fault))
        await asyncio.gather(*(self._step(at_s, undo, fault) for at_s, undo, fault in steps))

    async def _step(self, at_s: float, undo: bool, fault: Fault) -> None:
        delay = self.start_unix + at_s - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        argv = fault.undo if undo else fault.command
        assert argv is not None
        label = shlex.join(argv)[:DETAIL_CHARS]
        status, output = await run_bounded(argv, fault.timeout_s)
        if status == 0:
            self._log("fault_cleared" if undo else "fault_injected", fault.target, f"exec {label}: exit 0")
        else:
            reason = "timed out" if status is None else f"exit {status}"
            tail = f": {output}" if output else ""
            self._log("fault_failed", fault.target, f"{'undo' if undo else 'exec'} {label}: {reason}{tail}")

    def _log(self, kind: str, target: str, detail: str) -> None:
        event = ChaosEvent(time.time(), kind, target, detail)
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)


async def run_bounded(argv: Sequence[str], timeout_s: float) -> tuple[int | None, str]:
    """(exit status or None on timeout, the last line of its output); a command that cannot start is 127."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True
        )
    except OSError as exc:
        return 127, exc.strerror or str(exc)
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # its own session: whatever it started goes too
        await process.wait()
        return None, ""
    lines = output.decode("utf-8", "replace").strip().splitlines()
    return process.returncode, (lines[-1][:DETAIL_CHARS] if lines else "")
