"""The live status line of `surge run`: tails windows.jsonl as the Locust master appends it.

`failed` is the newest second's share of failures among admitted attempts — one minus the success ratio the
`min_success_ratio` SLO judges (runfolder.outcomes' algebra): a business decline is not a failure and a 429 is
not admitted. Attempts that failed on the client's credentials (a target profile's AUTH_FAILED, SIGN_FAILED,
UNAUTHORIZED, …) are not the service failing: they are shown apart, as `unauthorized`.

Only counts are read here (no histogram decoding beyond the p99 of the newest second), so following the run
costs the orchestrator almost nothing while Locust and the gateway share the machine's cores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from runfolder.outcomes import AUTH_CODES, success_ratio


@dataclass
class LiveWindows:
    """Reads new complete lines of windows.jsonl on each poll and keeps the newest second."""

    path: Path
    horizon_s: float = float("inf")  # seconds after the scenario's end only drain: keep showing its last second
    offset: int = 0
    latest: dict[str, Any] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)

    def poll(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        complete, _, _ = chunk.rpartition(b"\n")
        if not complete:
            return
        self.offset += len(complete) + 1
        for line in complete.splitlines():
            try:
                window = json.loads(line)
            except json.JSONDecodeError:
                continue
            if window.get("t", 0) < self.horizon_s:
                self.latest = window

    def status(self, elapsed_s: float, total_s: float) -> str:
        head = f"{elapsed_s:5.0f}/{total_s:.0f}s"
        window = self.latest
        if not window:
            return f"{head}  waiting for the first second of load…"
        classes: dict[str, dict[str, Any]] = window.get("classes", {})
        ok = int(classes.get("succeeded", {}).get("count", 0))
        counts = {name: int(c.get("count", 0)) for name, c in classes.items()}
        refused = sum(int(n) for code, n in (window.get("codes") or {}).items() if code in AUTH_CODES)
        counts["error"] = max(0, counts.get("error", 0) - refused)
        ratio = success_ratio(counts)
        share = 100.0 * (1.0 - ratio) if ratio is not None else 0.0
        p99 = _p99_ms(classes)
        tail = f"  faults: {', '.join(self.faults[-3:])}" if self.faults else ""
        unauthorized = f"  unauthorized {refused}/s" if refused else ""
        return (
            f"{head}  t={window.get('t')}s  offered {window.get('offered', 0)}/s  succeeded {ok}/s  "
            f"failed {share:.1f}%{unauthorized}  p99 {p99:.0f} ms{tail}"
        )


def _p99_ms(classes: dict[str, dict[str, Any]]) -> float:
    merged: HdrHistogram | None = None
    for cls in classes.values():
        encoded = cls.get("intended")
        if not encoded:
            continue
        histogram = HdrHistogram.decode(encoded)
        if merged is None:
            merged = histogram
        else:
            merged.add(histogram)
    return merged.get_value_at_percentile(99.0) / 1000.0 if merged is not None else 0.0
