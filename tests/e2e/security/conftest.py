"""A lone replica and a one-replica cluster, started once per module as real processes on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mock_gateway.cluster.handle import ClusterProcess
from mock_gateway.cluster.supervisor import bind_listener
from tests.support.procs import wait_ready

TOKEN = "security-suite-token-0123456789"


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    ledger: Path
    token: str
    pid: int


@pytest.fixture(scope="module")
def lone_replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    folder = tmp_path_factory.mktemp("replica")
    ledger = folder / "ledger.sqlite"
    config = folder / "gateway.toml"
    config.write_text(f'[ledger]\npath = "{ledger}"\n')
    listener = bind_listener("127.0.0.1", 0)  # bound here and inherited: no free-port race
    port = listener.getsockname()[1]
    env = dict(os.environ, SURGE_ADMIN_TOKEN=TOKEN)
    log = (folder / "replica.log").open("wb")
    fd = str(listener.fileno())
    process = subprocess.Popen(
        [sys.executable, "-m", "mock_gateway", "--config", str(config), "--port", str(port), "--listen-fd", fd,
         "--name", "solo"],
        stdout=log, stderr=subprocess.STDOUT, env=env, pass_fds=(listener.fileno(),),
    )  # fmt: skip
    listener.close()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/readyz")
        yield Target("replica", url, ledger, TOKEN, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    folder = tmp_path_factory.mktemp("cluster")
    with ClusterProcess.start(None, 1, folder) as cluster:
        yield Target("router", cluster.url, cluster.ledger_path, cluster.admin_token, cluster.pid)
