"""Starts, watches, kills, pauses and restarts the replica processes of one cluster.

Orphans are the failure this module exists to prevent: each replica runs in a session of its own (a terminal's
Ctrl-C reaches only the router, which stops the replicas in order) and with `PR_SET_PDEATHSIG = SIGKILL` (even a
SIGKILLed router takes its replicas with it; `mock_gateway.lifeline`).

Ports are bound here and the descriptor handed to the child: choosing a free port and letting the child bind it
later was a race another process could win. A restarted replica gets its old port back when it is still free,
else a new one (`on_port` tells the router); the supervisor's own copy is closed once the child runs, so a dead
replica's port refuses connections at once (the fast failure signal).

Exits are noticed through a pidfd on the event loop (instant, no polling; SIGSTOP does not fire it). Health is
the router's to decide, with one exception: a replica marked down whose process is *stopped* is fenced (killed
and restarted), because a stopped process can hold the shared ledger's write lock for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from mock_gateway.admin import ENV_TOKEN
from mock_gateway.cluster.events import EventKind
from mock_gateway.lifeline import guarded_argv

log = logging.getLogger(__name__)

FENCE_AFTER_S = 1.0  # down and stopped this long: fenced (see Supervisor.fence_stopped)

EventSink = Callable[[EventKind, str, str], object]
"""(kind, replica name, detail) — the cluster writes these to the events file."""

ExitHook = Callable[[str], None]
"""Called with the replica name when its process exits, so the router can take it out at once."""

PortHook = Callable[[str, int], None]
"""Called with (replica name, new port) when a restarted replica could not get its old port back."""

LISTEN_BACKLOG = 1024


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (0: any free port), inheritable by a child process."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def child_env(admin_token: str) -> dict[str, str]:
    """The environment for a child given a fully resolved JSON config: without `SURGE_<SECTION>__<KEY>`.

    Those were already applied when the config was resolved; applied again in the child they would beat
    the explicit overrides baked into the file. The admin token travels here (`SURGE_ADMIN_TOKEN`) rather
    than in a config file, so the only file that holds it is the private cluster.json.
    """
    env = {k: v for k, v in os.environ.items() if not (k.startswith("SURGE_") and "__" in k)}
    if admin_token:
        env[ENV_TOKEN] = admin_token
    return env


def _stopped(rep: ReplicaProcess) -> bool:
    """True when the replica's process exists and is stopped (state T), not merely slow or gone."""
    if not rep.alive or rep.pid is None:
        return False
    try:
        return psutil.Process(rep.pid).status() == psutil.STATUS_STOPPED
    except psutil.NoSuchProcess:
        return False


@dataclass(slots=True)
class ReplicaProcess:
    """One replica's current process (replaced on restart; name and port stay)."""

    name: str
    port: int
    listener: socket.socket | None = field(default=None, repr=False)  # bound, not yet handed to a child
    popen: subprocess.Popen[bytes] | None = None
    paused: bool = False
    exited: asyncio.Future[int] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    @property
    def alive(self) -> bool:
        return self.exited is not None and not self.exited.done()


class Supervisor:
    """Owns the replica processes; every method is called from the event loop thread."""

    def __init__(
        self,
        *,
        config_path: Path,
        admin_token: str,
        replicas: list[str],
        log_dir: Path,
        on_event: EventSink,
        on_exit: ExitHook,
        on_port: PortHook | None = None,
        host: str = "127.0.0.1",
        bank_share: float = 1.0,
    ) -> None:
        """Binds every replica's listening socket now, so `ports()` is known before any process starts.
        `bank_share`: each replica's part of a channel's bank quota (1/N for N active-active replicas)."""
        self._config_path = config_path
        self._bank_share = bank_share
        self._admin_token = admin_token
        self._log_dir = log_dir
        self._on_event = on_event
        self._on_exit = on_exit
        self._on_port = on_port
        self._host = host
        self._stopping = False
        self.replicas: dict[str, ReplicaProcess] = {}
        try:
            for name in replicas:
                listener = bind_listener(host, 0)
                self.replicas[name] = ReplicaProcess(name, listener.getsockname()[1], listener)
        except BaseException:
            self.close_listeners()
            raise

    def ports(self) -> dict[str, int]:
        return {name: rep.port for name, rep in self.replicas.items()}

    def close_listeners(self) -> None:
        for rep in self.replicas.values():
            if rep.listener is not None:
                rep.listener.close()
                rep.listener = None

    def get(self, name: str) -> ReplicaProcess:
        return self.replicas[name]

    def running(self) -> list[str]:
        """Replicas whose process is alive and not paused by us, in priority order."""
        return [r.name for r in self.replicas.values() if r.alive and not r.paused]

    def _argv(self, rep: ReplicaProcess, fd: int) -> list[str]:
        """Replicas always serve on loopback (the socket bound here): only the router may face the outside."""
        args = ["--config", str(self._config_path), "--port", str(rep.port), "--host", self._host]
        args += ["--listen-fd", str(fd), "--name", rep.name, "--behind-router", "--bank-share", repr(self._bank_share)]
        return guarded_argv("mock_gateway", args)

    def _listener(self, rep: ReplicaProcess) -> socket.socket:
        """The bound socket for the next process: the one bound at start, else the old port, else a new one."""
        if rep.listener is not None:
            return rep.listener
        try:
            return bind_listener(self._host, rep.port)
        except OSError as exc:
            listener = bind_listener(self._host, 0)
            old, rep.port = rep.port, listener.getsockname()[1]
            self._on_event(EventKind.PROCESS_STARTED, rep.name, f"port {old} taken ({exc.strerror}); now {rep.port}")
            if self._on_port is not None:
                self._on_port(rep.name, rep.port)
            return listener

    def spawn(self, name: str) -> ReplicaProcess:
        """Start the replica's process (it must not be running); readiness is the health checker's job."""
        rep = self.replicas[name]
        if rep.alive:
            raise RuntimeError(f"replica {name} is already running (pid {rep.pid})")
        loop = asyncio.get_running_loop()
        listener = self._listener(rep)
        rep.listener = None
        try:
            with (self._log_dir / f"replica-{name}.log").open("ab") as log:
                rep.popen = subprocess.Popen(
                    self._argv(rep, listener.fileno()),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                    env=child_env(self._admin_token),
                    pass_fds=(listener.fileno(),),
                )
        finally:
            listener.close()  # the child holds its own copy: when it dies, the port refuses connections
        rep.paused = False
        rep.exited = loop.create_future()
        pidfd = os.pidfd_open(rep.popen.pid)
        loop.add_reader(pidfd, self._reap, rep, rep.popen, rep.exited, pidfd)
        self._on_event(EventKind.PROCESS_STARTED, name, f"pid {rep.popen.pid} port {rep.port}")
        return rep

    def _reap(
        self, rep: ReplicaProcess, popen: subprocess.Popen[bytes], exited: asyncio.Future[int], pidfd: int
    ) -> None:
        asyncio.get_running_loop().remove_reader(pidfd)
        os.close(pidfd)
        code = popen.wait()
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        rep.paused = False
        self._on_event(EventKind.PROCESS_DIED, rep.name, f"pid {popen.pid} {how}")
        exited.set_result(code)
        if not self._stopping:
            self._on_exit(rep.name)

    def _signal(self, rep: ReplicaProcess, sig: signal.Signals) -> None:
        if not rep.alive or rep.popen is None:
            raise ProcessLookupError(f"replica {rep.name} is not running")
        rep.popen.send_signal(sig)

    async def kill(self, name: str, timeout_s: float = 5.0) -> None:
        """SIGKILL: the crash the harness measures recovery from. Returns once the process is reaped, so that
        whoever asked sees it gone: until then its idempotency claims still look live to the other replicas."""
        rep = self.replicas[name]
        self._signal(rep, signal.SIGKILL)
        self._on_event(EventKind.KILLED, name, f"pid {rep.pid}")
        if rep.exited is not None:
            await asyncio.wait_for(asyncio.shield(rep.exited), timeout_s)

    def pause(self, name: str) -> None:
        """SIGSTOP: a replica that hangs with its sockets open, the harder case for detection."""
        rep = self.replicas[name]
        self._signal(rep, signal.SIGSTOP)
        rep.paused = True
        self._on_event(EventKind.PAUSED, name, f"pid {rep.pid}")

    def resume(self, name: str) -> None:
        rep = self.replicas[name]
        self._signal(rep, signal.SIGCONT)
        rep.paused = False
        self._on_event(EventKind.RESUMED, name, f"pid {rep.pid}")

    async def restart(self, name: str, timeout_s: float = 5.0) -> ReplicaProcess:
        """Kill if alive, wait for the exit, spawn again (on the same port when it is still free)."""
        rep = self.replicas[name]
        if rep.alive and rep.popen is not None and rep.exited is not None:
            rep.popen.send_signal(signal.SIGKILL)
            await asyncio.wait_for(asyncio.shield(rep.exited), timeout_s)
        self.spawn(name)
        self._on_event(EventKind.RESTARTED, name, f"pid {rep.pid}")
        return rep

    async def fence_stopped(
        self,
        is_up: Callable[[str], bool],
        *,
        interval_s: float,
        after_s: float = FENCE_AFTER_S,
        on_fenced: Callable[[str], None],
    ) -> None:
        """The liveness half of health checking: restart a replica that is down because it is frozen.

        Readiness (the router's checks) takes a frozen replica out of rotation, but its process lives on and
        may hold the shared ledger's write lock: a replica stopped inside a commit stalls every other replica
        for as long as it stays stopped (measured: the whole cluster answers 503 until SIGCONT). So a replica
        that has been down for `after_s` while its process is *stopped* (SIGSTOP, a debugger) is fenced:
        SIGKILLed, which releases its locks, and started again. A running replica that fails its checks is
        left alone — it is slow, not frozen, and killing it would turn slowness into an outage. Runs until
        cancelled.
        """
        down_since: dict[str, float] = {}
        while True:
            await asyncio.sleep(interval_s)
            now = time.monotonic()
            for name, rep in self.replicas.items():
                if is_up(name) or not _stopped(rep):
                    down_since.pop(name, None)
                    continue
                since = down_since.setdefault(name, now)
                if now - since < after_s:
                    continue
                del down_since[name]
                self._on_event(EventKind.KILLED, name, f"fenced: down and stopped for {now - since:.1f} s")
                try:
                    await self.restart(name)
                except Exception as exc:  # a failed restart must not end the fencing of every replica
                    log.exception("fencing: restarting replica %s failed", name)
                    self._on_event(EventKind.RESTART_FAILED, name, f"fenced restart failed: {exc!r}"[:300])
                    continue
                on_fenced(name)

    async def stop_all(self, grace_s: float = 5.0) -> None:
        """SIGTERM everyone (SIGCONT first for the paused), wait up to `grace_s`, then SIGKILL the rest."""
        self._stopping = True
        self.close_listeners()
        running = [r for r in self.replicas.values() if r.alive and r.popen is not None]
        for rep in running:
            assert rep.popen is not None
            if rep.paused:
                rep.popen.send_signal(signal.SIGCONT)
            rep.popen.send_signal(signal.SIGTERM)
        waits = [asyncio.shield(r.exited) for r in running if r.exited is not None]
        if not waits:
            return
        _, pending = await asyncio.wait(waits, timeout=grace_s)
        if pending:
            for rep in running:
                if rep.alive and rep.popen is not None:
                    rep.popen.send_signal(signal.SIGKILL)
            await asyncio.wait(pending, timeout=grace_s)

    def kill_all_now(self) -> None:
        """Last resort from a `finally`: SIGKILL and reap synchronously, whatever state the loop is in."""
        self._stopping = True
        self.close_listeners()
        for rep in self.replicas.values():
            if rep.popen is not None and rep.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    rep.popen.send_signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    rep.popen.wait(timeout=5)
