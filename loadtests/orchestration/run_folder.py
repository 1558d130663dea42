"""Writes the parts of a run folder (CONTRACT §6) that belong to the orchestrator, not to Locust or reports:
meta.json before the load, events.csv and the ledger copy after it."""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtests.errors import HarnessError, UsageError
from reports.claim import FolderTaken, claim, claim_new
from reports.finalize import finalize_run
from reports.frames import RunFolderError


@dataclass(frozen=True, slots=True)
class Event:
    """One row of events.csv; `unix` is turned into `t_s` against the run's start when written."""

    unix: float
    source: str
    kind: str
    target: str
    detail: str


def new_run_dir(out: str | None, scenario_name: str, root: Path = Path("runs")) -> Path:
    """`--out DIR` exactly, else runs/<UTC timestamp>-<scenario> (with a `-2` suffix if a run started in the same
    second); claimed atomically (reports.claim), so a folder that holds a run, or that another run is writing,
    is refused and no earlier result is overwritten."""
    try:
        if out:
            return claim(Path(out))
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in scenario_name)[:60] or "scenario"
        return claim_new(root, f"{stamp}-{safe}")
    except FolderTaken as exc:
        raise UsageError(f"--out {out}: {exc}; choose an empty folder" if out else str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot create the run folder {out or root}: {exc.strerror}") from None


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")


def read_cluster_events(path: Path) -> list[Event]:
    """The cluster's JSON-lines events (docs/internals.md §3); a torn last line from a kill is skipped."""
    events: list[Event] = []
    if not path.exists():
        return events
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            raw = json.loads(line)
        except json.JSONDecodeError:
            continue
        events.append(
            Event(
                float(raw["unix"]),
                "cluster",
                str(raw["kind"]),
                str(raw.get("replica") or ""),
                str(raw.get("detail") or ""),
            )
        )
    return events


def write_events_csv(path: Path, start_unix: float, events: Iterable[Event]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["t_s", "unix", "source", "kind", "target", "detail"])
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


def copy_ledger(source: Path, target: Path) -> bool:
    """A consistent snapshot through SQLite's backup API: the live file may have WAL frames not yet
    checkpointed, so a plain file copy could miss acknowledged repayments."""
    if not source.exists():
        return False
    # as_uri() percent-encodes the path: a folder named `run#1` or `50%` must not cut the URI short
    src = sqlite3.connect(source.resolve().as_uri() + "?mode=ro", uri=True, timeout=10)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file in the run folder, no -wal/-shm
    finally:
        dst.close()
        src.close()
    return True


def analyse(run_dir: Path, baseline: Path | None) -> dict[str, Any]:
    """The verdict (reports.finalize); a folder the load left unreadable is the harness's failure (exit 3)."""
    try:
        return finalize_run(run_dir, baseline)
    except RunFolderError as exc:
        raise HarnessError(f"the run folder {run_dir} cannot be analysed: {exc}") from None
