"""`action = "exec"` faults (docs/targets.md): a team's own command at the fault's time, its undo after duration_s.

argv lists only, never a shell, so a profile cannot smuggle in `; rm -rf`. Each command is bounded by its
`timeout_s`, and runs in a session (process group) of its own: it is done when it exits, and what it left running
in the background (`docker run -d`) is its own business — unless the timeout SIGKILLs its whole group. Its
output pipe is closed once it has exited (a background child writing to it gets SIGPIPE); only the last 64 KiB
is kept. Events: `fault_injected` / `fault_cleared` (command / undo exited 0) and `fault_failed` (non-zero, not
runnable or timed out) — a run with a failed fault exits 3: the fault the scenario promised was not played.

A fault's undo is owed once its command exited 0 (or was killed on its timeout: it may have acted), and it is
paid even when the run does not live to its time: a run stopped early (a signal, an abort rule) or one whose
fault outlasts the scenario calls `undo()`, which runs every owed undo at once — a team's delay rule or paused
process must not outlive the rehearsal. Only a second Ctrl-C (which kills everything surge started, at once)
skips it. A failed injection owes nothing: its undo is skipped, as for the built-in faults.
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
from loadtests.scenario.parts import Fault
from runfolder.events import FAULT_CLEARED, FAULT_FAILED, FAULT_INJECTED

DETAIL_CHARS = 200
OUTPUT_KEPT = 64 * 1024  # of a command's output, the tail its last line is taken from
READ_CHUNK = 64 * 1024
DRAIN_S = 0.2  # after the command exited, how long what it wrote is still read


class ExecPlayer:
    """Runs each exec fault at `start_unix + at_s` and its undo `duration_s` later, in time order."""

    def __init__(
        self, faults: Sequence[Fault], start_unix: float, on_event: Callable[[ChaosEvent], None] | None = None
    ) -> None:
        self.faults = [fault for fault in faults if fault.action == "exec"]
        self.start_unix = start_unix
        self.on_event = on_event
        self.events: list[ChaosEvent] = []
        self._owed: dict[int, Fault] = {}  # injected (exit 0) with an undo that has not started yet

    async def undo(self) -> None:
        """Run now, one after another, the undo of every fault injected and not undone yet (call it after `play`
        ended or was cancelled)."""
        for fault in list(self._owed.values()):
            await self._run(fault, undo=True)

    async def play(self) -> None:
        await asyncio.gather(*(self._play(fault) for fault in self.faults))

    async def _play(self, fault: Fault) -> None:
        """One fault: its command at `at_s`, then — once that has ended and owes an undo — the undo at its time."""
        await self._sleep_until(fault.at_s)
        await self._run(fault, undo=False)
        if id(fault) in self._owed:
            await self._sleep_until(fault.at_s + fault.duration_s)
            await self._run(fault, undo=True)

    async def _sleep_until(self, at_s: float) -> None:
        delay = self.start_unix + at_s - time.time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _run(self, fault: Fault, *, undo: bool) -> None:
        argv = fault.undo if undo else fault.command
        assert argv is not None
        if undo and self._owed.pop(id(fault), None) is None:
            return  # the injection failed (nothing to undo) or the undo already started
        label = shlex.join(argv)[:DETAIL_CHARS]
        status, output = await run_bounded(argv, fault.timeout_s)
        if not undo and fault.undo and status in (0, None):  # a command killed on its timeout may have acted
            self._owed[id(fault)] = fault
        if status == 0:
            self._log(FAULT_CLEARED if undo else FAULT_INJECTED, fault.target, f"exec {label}: exit 0")
        else:
            reason = "timed out" if status is None else f"exit {status}"
            tail = f": {output}" if output else ""
            self._log(FAULT_FAILED, fault.target, f"{'undo' if undo else 'exec'} {label}: {reason}{tail}")

    def _log(self, kind: str, target: str, detail: str) -> None:
        event = ChaosEvent(time.time(), kind, target, detail)
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)


async def run_bounded(argv: Sequence[str], timeout_s: float) -> tuple[int | None, str]:
    """(exit status or None on timeout, the last line of its output); a command that cannot start is 127.

    The command is done when it exits, not when its output pipe closes: `sh -c "sleep 300 & echo started"` exits
    0 at once, though its background child still holds the pipe. Of its output (stdout and stderr) only the last
    OUTPUT_KEPT bytes are kept, however much it writes. Once it has exited, what is already in the pipe is read
    for DRAIN_S and the pipe is closed.
    """
    read_fd, write_fd = os.pipe()
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=write_fd, stderr=write_fd, start_new_session=True
        )
    except OSError as exc:
        os.close(read_fd)
        return 127, exc.strerror or str(exc)
    finally:
        os.close(write_fd)  # the child holds its own copy: the pipe ends when it and its children close theirs
    reader = asyncio.StreamReader(limit=READ_CHUNK)
    transport, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
    )
    tail = bytearray()
    collecting = asyncio.create_task(_keep_tail(reader, tail))
    try:
        try:
            await asyncio.wait_for(process.wait(), timeout=timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # its own session: whatever it started goes too
            await process.wait()
            return None, ""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(collecting), timeout=DRAIN_S)
    finally:
        collecting.cancel()
        transport.close()
    lines = tail.decode("utf-8", "replace").strip().splitlines()
    return process.returncode, (lines[-1][:DETAIL_CHARS] if lines else "")


async def _keep_tail(reader: asyncio.StreamReader, tail: bytearray) -> None:
    """Read `reader` to its end, keeping only its last OUTPUT_KEPT bytes in `tail`."""
    while chunk := await reader.read(READ_CHUNK):
        tail += chunk
        del tail[:-OUTPUT_KEPT]
