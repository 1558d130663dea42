"""The live status line tails windows.jsonl: complete lines only, the scenario's own seconds only."""

from __future__ import annotations

import json
from pathlib import Path

from loadtests.orchestration.live import LiveWindows
from reports.hdr import new_histogram


def line(t: int, offered: int, ok: int, latency_us: int) -> str:
    hist = new_histogram()
    hist.record_value(latency_us, ok)
    cls = {"count": ok, "intended": hist.encode().decode(), "service": hist.encode().decode()}
    return json.dumps({"t": t, "offered": offered, "classes": {"succeeded": cls, "shed": {"count": 1}}})


def test_tails_complete_lines_and_ignores_the_drain(tmp_path: Path) -> None:
    path = tmp_path / "windows.jsonl"
    live = LiveWindows(path, horizon_s=10)
    live.poll()
    assert "waiting" in live.status(0, 10)
    path.write_text(line(3, 40, 39, 120_000) + "\n" + line(4, 41, 40, 90_000)[:20])  # a torn last line
    live.poll()
    status = live.status(4, 10)
    assert "t=3s" in status and "offered 40/s" in status and "succeeded 39/s" in status
    assert "failed 2.5%" in status and "p99 120 ms" in status
    with path.open("w") as handle:
        handle.write(line(3, 40, 39, 120_000) + "\n" + line(9, 41, 40, 90_000) + "\n" + line(11, 0, 2, 5_000) + "\n")
    live.poll()
    assert "t=9s" in live.status(10, 10), "the drain second after the end is not shown"


def test_the_failed_share_is_the_success_ratio_slos_complement(tmp_path: Path) -> None:
    """A business decline is good and a 429 is not admitted (the verdict's algebra); only shed/error/timeout fail."""
    path = tmp_path / "windows.jsonl"
    classes = {name: {"count": n} for name, n in [("succeeded", 6), ("declined", 2), ("rate_limited", 5), ("error", 2)]}
    path.write_text(json.dumps({"t": 1, "offered": 15, "classes": classes}) + "\n")
    live = LiveWindows(path, horizon_s=10)
    live.poll()
    assert "failed 20.0%" in live.status(1, 10)
