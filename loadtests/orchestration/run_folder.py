"""The orchestrator's part of a run folder (docs/internals.md §5), not Locust's or the reports': the folder itself,
the ledger copy after the load, and the hand-over to `reports`. The formats are the `runfolder` package's."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtests.errors import HarnessError, UsageError
from runfolder.claim import FolderTaken, claim, claim_new
from runfolder.figures import Figures
from runfolder.layout import RunFolderError


def new_run_dir(out: str | None, scenario_name: str, root: Path = Path("runs")) -> Path:
    """`--out DIR` exactly, else runs/<UTC timestamp>-<scenario> (with a `-2` suffix if a run started in the same
    second); claimed atomically (runfolder.claim), so a folder that holds a run, or that another run is writing,
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


def conclude(run_dir: Path, baseline: Figures | None) -> dict[str, Any]:
    """The verdict (reports.finalize); a folder the load left unreadable is the harness's failure (exit 3)."""
    from reports.finalize import finalize_run  # the report stack (pandas, plotly): not for a refused command

    try:
        return finalize_run(run_dir, baseline)
    except RunFolderError as exc:
        raise HarnessError(f"the run folder {run_dir} cannot be analysed: {exc}") from None
