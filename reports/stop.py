"""`stop.json`: how a run that did not reach its scenario's end was stopped — the one record of it.

Written once, atomically, by whoever stopped the run first: `surge run` on SIGINT/SIGTERM (before it asks
Locust to stop), the Locust master on a web-UI stop or a tripped `[[abort]]` rule. Later writers keep the first
record. Light on purpose (no pandas): the Locust process imports it too.

    {"at_unix": 1764543605.2, "at_s": 5.2, "by": "sigint", "reason": "Ctrl-C (SIGINT)",
     "aborted": null | {"rule": "error_ratio > 0.25 over 5 s", "at_s": 24.0, "value": 0.31}}

`at_s` is seconds since the run's t=0 (negative: before the load began). Charts and verdicts stop at `at_s`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

STOP_FILE = "stop.json"
StoppedBy = Literal["sigint", "sigterm", "web-ui", "abort"]
EXIT_SIGINT, EXIT_SIGTERM, EXIT_ABORTED = 130, 143, 1  # 128 + signal number, as shells report a signal's end


@dataclass(frozen=True, slots=True)
class Aborted:
    """The `[[abort]]` rule that tripped, when, and the value it saw."""

    rule: str
    at_s: float
    value: float


@dataclass(frozen=True, slots=True)
class StopRecord:
    at_unix: float
    at_s: float
    by: StoppedBy
    reason: str
    aborted: Aborted | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StopRecord:
        aborted = data.get("aborted")
        return cls(
            at_unix=float(data["at_unix"]),
            at_s=float(data["at_s"]),
            by=data["by"],
            reason=str(data.get("reason", "")),
            aborted=None
            if not aborted
            else Aborted(str(aborted["rule"]), float(aborted["at_s"]), float(aborted["value"])),
        )

    @property
    def exit_code(self) -> int | None:
        """The exit code the stop itself imposes (130, 143, 1 for an abort); None for a web-UI stop."""
        return {"sigint": EXIT_SIGINT, "sigterm": EXIT_SIGTERM, "abort": EXIT_ABORTED}.get(self.by)


def write_stop(run_dir: Path, record: StopRecord) -> StopRecord:
    """Record the stop unless one is recorded already; the record in force (the first) is returned."""
    path = run_dir / STOP_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return read_stop(run_dir) or record
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(record.to_json(), indent=2) + "\n")
    return record


def read_stop(run_dir: Path) -> StopRecord | None:
    """The run's stop record, or None when the run ran to its end (or the file is unreadable)."""
    try:
        return StopRecord.from_json(json.loads((run_dir / STOP_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
