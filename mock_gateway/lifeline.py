"""Children that die with their parent: `PR_SET_PDEATHSIG = SIGKILL` set by a trampoline in the child.

Orphans are what this prevents: a replica outliving its router, a cluster or a Locust load generator outliving
the `surge run` (or test) that started it, even when that parent is SIGKILLed and has no chance to clean up.
The death signal is set by a tiny trampoline (`python -c "...run_guarded()"`) rather than a `preexec_fn`,
because forking a threaded process and running Python before `exec` can deadlock; the trampoline also closes
the race where the parent dies between fork and prctl by checking that its parent is still the one expected.

Linux fires the signal when the *thread* that forked the child ends: fork from a thread that outlives the
child (the main thread, an event loop's thread, or `asyncio.to_thread`, whose workers live as long as the loop).
Shared by the cluster (replicas, the cluster handle) and by loadtests' orchestration (the Locust child).
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys

PR_SET_PDEATHSIG = 1


def guarded_argv(module: str, args: list[str]) -> list[str]:
    """The command that runs `python -m MODULE ARGS` in a child that dies with the calling thread's process."""
    return [
        sys.executable,
        "-c",
        "from mock_gateway.lifeline import run_guarded; run_guarded()",
        str(os.getpid()),
        module,
        *args,
    ]


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent (`parent_pid`, checked after the prctl) dies.

    Also for processes that fork their own children, such as Locust's `--processes` workers forked by a master.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def run_guarded() -> None:
    """Child side of the trampoline: set the death signal, check the parent, become `python -m MODULE`.

    argv: [-c, PARENT_PID, MODULE, module args...].
    """
    parent_pid, module = int(sys.argv[1]), sys.argv[2]
    die_with_parent(parent_pid)
    sys.argv = [module, *sys.argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
