"""Fixtures for the gateway tests: configs in a temp dir, an in-process app, and real replica processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from mock_gateway.clock import SimClock
from mock_gateway.config import GatewayConfig
from mock_gateway.config_sources import load_config
from mock_gateway.replica.app import create_app

TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
REPO = Path(__file__).resolve().parents[2]

# Caps high enough never to refuse, no bank latency: a test turns on exactly what it exercises.
QUIET: dict[str, Any] = {
    "limits": {"global_tps": 1_000_000, "replica_tps": 1_000_000, "user_tps": 1_000_000},
    "channels": [
        {
            "code": "ICBC",
            "single_fen": 5_000_000,
            "card_daily_fen": 5_000_000,
            "concurrency": 1000,
            "latency_ms": {"median": 0, "p99": 0},
        },
        {
            "code": "BOC",
            "single_fen": 1_000_000,
            "card_daily_fen": 2_000_000,
            "concurrency": 1000,
            "latency_ms": {"median": 0, "p99": 0},
        },
    ],
    "admin": {"token": TOKEN},
}


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., GatewayConfig]:
    """`make_config(limits={"replica_tps": 5})`: QUIET plus overrides, ledger in the test's temp dir."""

    def build(**overrides: Any) -> GatewayConfig:
        data = merge(QUIET, {"ledger": {"path": str(tmp_path / "ledger.sqlite")}})
        return load_config(None, env={}, overrides=merge(data, overrides))

    return build


class ManualWall:
    """A wall clock the test moves by hand: `wall.advance(3600)`."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., Any]]:
    """`await make_client(config, clock=..., behind_router=...)` → an aiohttp TestClient on the replica app."""
    clients: list[TestClient[Any, Any]] = []

    async def build(config: GatewayConfig, *, clock: SimClock | None = None, **kwargs: Any) -> TestClient[Any, Any]:
        app = create_app(config, clock=clock, admin_token=TOKEN, **kwargs)
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.close()


@dataclass
class Replica:
    url: str
    process: subprocess.Popen[str]
    config_path: Path
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None


@pytest.fixture
def start_replica(tmp_path: Path) -> Iterator[Callable[..., Replica]]:
    """Start `python -m mock_gateway` on a free port with a JSON config; every process is killed at teardown."""
    started: list[Replica] = []

    def start(config: dict[str, Any], *, name: str = "r1", extra_args: tuple[str, ...] = ()) -> Replica:
        path = tmp_path / f"config-{name}-{len(started)}.json"
        path.write_text(json.dumps(merge(QUIET, config)))
        process = subprocess.Popen(
            [sys.executable, "-m", "mock_gateway", "--config", str(path), "--port", "0", "--name", name, *extra_args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
            env={k: v for k, v in os.environ.items() if not k.startswith("SURGE_")},
        )
        replica = Replica("", process, path)
        started.append(replica)
        deadline = time.monotonic() + 15
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            replica.lines.append(line)
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                replica.url = match.group(1)
                replica.reader = threading.Thread(target=_drain, args=(process, replica.lines), daemon=True)
                replica.reader.start()
                return replica
        raise AssertionError(f"replica did not start: {''.join(replica.lines)}")

    yield start
    for replica in started:
        if replica.process.poll() is None:
            replica.process.send_signal(signal.SIGKILL)
        replica.process.wait(timeout=10)
        if replica.reader is not None:
            replica.reader.join(timeout=5)
        if replica.process.stdout is not None:
            replica.process.stdout.close()


def _drain(process: subprocess.Popen[str], lines: list[str]) -> None:
    """Keep reading the replica's output so a chatty replica never blocks on a full pipe."""
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)


def body(user: str = "u1", card: str = "c1", channel: str = "ICBC", amount: int = 1000) -> dict[str, Any]:
    return {"user_id": user, "card_id": card, "channel": channel, "amount_fen": amount}
