"""An exec fault's command: done when it exits (its background children are its own business), and only the
tail of its output kept, however much it writes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from loadtests.orchestration.exec_faults import run_bounded


async def test_a_command_is_done_when_it_exits_though_its_background_child_holds_the_pipe() -> None:
    """`sh -c "sleep 300 & echo started"` exits 0 at once; it was reported "timed out" and its child killed."""
    started = time.monotonic()
    status, output = await run_bounded(["sh", "-c", "sleep 300 & echo $!"], timeout_s=5)
    assert status == 0 and time.monotonic() - started < 3
    child = int(output)
    try:
        os.kill(child, 0)  # still running: the background child is the command's own business
    finally:
        os.kill(child, signal.SIGKILL)


async def test_a_command_past_its_timeout_is_killed_with_its_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    status, output = await run_bounded(["sh", "-c", f"sleep 300 & echo $! > {pid_file}; sleep 300"], timeout_s=0.5)
    assert (status, output) == (None, "")
    child = int(pid_file.read_text())
    for _ in range(50):  # the orphan is reaped by whoever adopted it
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        await asyncio.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    raise AssertionError("the background child outlived the timeout's kill")


def test_only_the_tail_of_a_huge_output_is_kept() -> None:
    """`head -c 1500000000 /dev/zero` grew surge's own process to 2.9 GB (communicate() buffers everything)."""
    script = (
        "import asyncio, resource\n"
        "from loadtests.orchestration.exec_faults import run_bounded\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "status, line = asyncio.run(run_bounded(['sh', '-c', 'head -c 400000000 /dev/zero; echo; echo last'], 120))\n"
        "grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
        "print(status, line, grown)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, check=True)
    status, line, grown_kib = done.stdout.split()
    assert (status, line) == ("0", "last")
    assert int(grown_kib) < 64 * 1024, f"RSS grew {int(grown_kib) // 1024} MiB reading 400 MB of output"
