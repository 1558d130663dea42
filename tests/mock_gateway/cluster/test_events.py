"""The events file format of docs/internals.md §3, and its Prometheus counterpart."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

from mock_gateway.cluster.events import EventKind, EventLog, RouterMetrics


def test_each_event_is_one_flushed_json_line_with_three_clocks(tmp_path: Path) -> None:
    path = tmp_path / "cluster-events.jsonl"
    metrics = RouterMetrics()
    log = EventLog(path, metrics)
    before = time.monotonic()
    log.emit(EventKind.FAILOVER, None, "r1->r2")
    log.emit(EventKind.REPLICA_DOWN, "r1", "process exited")
    lines = path.read_text(encoding="utf-8").splitlines()  # readable before close: flushed per line
    log.close()
    first, second = (json.loads(line) for line in lines)
    assert set(first) == {"unix", "mono", "wall", "kind", "replica", "detail"}
    assert (first["kind"], first["replica"], first["detail"]) == ("failover", None, "r1->r2")
    assert before <= first["mono"] <= second["mono"] <= time.monotonic()
    assert abs(first["unix"] - time.time()) < 5
    assert datetime.fromisoformat(first["wall"]).utcoffset() is not None
    assert (
        metrics.registry.get_sample_value("surge_router_events_total", {"kind": "replica_down", "replica": "r1"}) == 1
    )


def test_the_file_is_appended_to_not_truncated(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    for detail in ("first", "second"):
        with EventLog(path, RouterMetrics()) as log:
            log.emit(EventKind.PROCESS_STARTED, "r1", detail)
    assert [json.loads(line)["detail"] for line in path.read_text(encoding="utf-8").splitlines()] == [
        "first",
        "second",
    ]
