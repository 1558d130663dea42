"""Reading cluster-events.jsonl in tests, and waiting for an event with a bound."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def read_events(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def wait_event(
    path: Path, kind: str, replica: str | None = None, after_mono: float = 0.0, timeout_s: float = 15.0
) -> dict[str, Any]:
    """The first event of `kind` (for `replica`) later than `after_mono`; fails the test after `timeout_s`. Only a
    bound on waiting (generous: a starved machine): how soon an event came is asserted on its `mono` stamps."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for event in read_events(path):
            if event["kind"] == kind and event["mono"] > after_mono and replica in (None, event["replica"]):
                return event
        time.sleep(0.02)
    kinds = [(e["kind"], e["replica"]) for e in read_events(path)]
    raise AssertionError(f"no {kind} event for {replica} within {timeout_s} s; saw {kinds}")
