"""`ClusterProcess`: the handle other code (surge run, tests, benchmarks) holds on a cluster subprocess.

It starts `python -m mock_gateway.cluster` as a subprocess that dies with its caller, waits until it is ready
and stops it cleanly.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from mock_gateway.cluster.serve import EVENTS_FILE, STATE_FILE, make_private_dir, write_private_json
from mock_gateway.cluster.supervisor import child_env
from mock_gateway.config_sources import load_config
from mock_gateway.errors import ClusterStartError, ClusterUsageError
from mock_gateway.lifeline import guarded_argv


class ClusterProcess:
    """A running cluster subprocess, for `surge run`, tests and benchmarks."""

    def __init__(self, popen: subprocess.Popen[bytes], state_dir: Path, state: dict[str, Any]) -> None:
        self.popen = popen
        self.state_dir = state_dir
        self.state = state

    @classmethod
    def start(
        cls,
        config_path: Path | None,
        replicas: int,
        state_dir: Path,
        port: int = 0,
        overrides: dict[str, Any] | None = None,
        timeout_s: float = 20,
        host: str = "127.0.0.1",
        allow_public_bind: bool = False,
    ) -> ClusterProcess:
        """Launch `python -m mock_gateway.cluster.serve` and wait until cluster.json exists and /readyz is 200.

        The config (file, `SURGE_*` environment and `overrides`) is resolved here, so a bad key raises
        `ConfigError` before any process starts. The subprocess gets `PR_SET_PDEATHSIG`, which Linux fires
        when the *thread* that forked it ends: call this from a thread that outlives the cluster (the main
        thread, or `asyncio.to_thread`, whose default-executor workers live until the event loop closes).
        """
        config = load_config(config_path, overrides=overrides)
        if not 0 <= port <= 65535:
            raise ClusterUsageError(f"port must be 0-65535 (got {port})")
        make_private_dir(state_dir)
        resolved = state_dir / "cluster-config.json"
        data = config.model_dump(mode="json")
        token = data["admin"].pop("token")  # by environment, not in a file (see child_env)
        write_private_json(resolved, data)
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        args = ["--config", str(resolved), "--port", str(port), "--replicas", str(replicas)]
        args += ["--state-dir", str(state_dir), "--host", host]
        if allow_public_bind:
            args.append("--allow-public-bind")
        with (state_dir / "cluster.log").open("ab") as log:
            popen = subprocess.Popen(
                guarded_argv("mock_gateway.cluster.serve", args),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env=child_env(token),
            )
        cluster = cls(popen, state_dir, {})
        try:
            cluster._wait_ready(timeout_s)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        state_file = self.state_dir / STATE_FILE
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise ClusterStartError(f"cluster exited with {self.popen.returncode}: {self._log_tail()}")
            if state_file.exists():
                self.state = json.loads(state_file.read_text(encoding="utf-8"))
                if _get_status(self.url + "/readyz") == 200:
                    return
            time.sleep(0.05)
        raise ClusterStartError(f"cluster not ready within {timeout_s:g} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        log = self.state_dir / "cluster.log"
        lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines() if log.exists() else []
        return " | ".join(lines[-3:]) or "no output"

    def refresh(self) -> dict[str, Any]:
        """Re-read cluster.json (pids change on restart)."""
        self.state = json.loads((self.state_dir / STATE_FILE).read_text(encoding="utf-8"))
        return self.state

    @property
    def url(self) -> str:
        url: str = self.state["router"]["url"]
        return url

    @property
    def admin_token(self) -> str:
        token: str = self.state["admin_token"]
        return token

    @property
    def events_path(self) -> Path:
        return Path(self.state.get("events_path") or self.state_dir / EVENTS_FILE)

    @property
    def ledger_path(self) -> Path:
        return Path(self.state["ledger_path"])

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM (the cluster stops its replicas), wait, SIGKILL after `timeout_s`; idempotent."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _get_status(url: str) -> int:
    with contextlib.suppress(urllib.error.URLError, OSError):
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - our own loopback URL
                status: int = response.status
                return status
        except urllib.error.HTTPError as exc:
            return exc.code
    return 0
