"""events.csv: what happened to the run besides its load — the cluster's events, the faults played, the scenario's
spikes and phases — one time-ordered table the reports draw and cut recovery windows from.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

EVENT_COLUMNS: Final[tuple[str, ...]] = ("t_s", "unix", "source", "kind", "target", "detail")

# The `kind` of the fault players' rows (source `chaos`), written by loadtests' players and read by the reports.
# (The cluster's own kinds — replica_down, failover, … — are mock_gateway's, which may import nothing from here.)
FAULT_INJECTED: Final = "fault_injected"  # the fault's step succeeded (a built-in fault, or a command exited 0)
FAULT_CLEARED: Final = "fault_cleared"  # its undo succeeded
FAULT_FAILED: Final = "fault_failed"  # the injection or the undo failed: the run exits 3
FAULT_SKIPPED: Final = "fault_skipped"  # not played: a built-in fault against a gateway surge did not start


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One row of events.csv; `unix` is turned into `t_s` against the run's start when written."""

    unix: float
    source: str
    kind: str
    target: str
    detail: str


def write_events_csv(path: Path, start_unix: float, events: Iterable[RunEvent]) -> None:
    """events.csv sorted by time (internals §5)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(EVENT_COLUMNS)
        for event in sorted(events, key=lambda e: e.unix):
            writer.writerow(
                [
                    f"{event.unix - start_unix:.3f}",
                    f"{event.unix:.6f}",
                    event.source,
                    event.kind,
                    event.target,
                    event.detail,
                ]
            )


def read_cluster_events(path: Path) -> list[RunEvent]:
    """The cluster's JSON-lines events (docs/internals.md §3); a torn last line from a kill is skipped."""
    events: list[RunEvent] = []
    if not path.exists():
        return events
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            raw = json.loads(line)
        except json.JSONDecodeError:
            continue
        events.append(
            RunEvent(
                float(raw["unix"]),
                "cluster",
                str(raw["kind"]),
                str(raw.get("replica") or ""),
                str(raw.get("detail") or ""),
            )
        )
    return events
