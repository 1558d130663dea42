"""Writing the request history (internals §5 `history/<worker>.csv`): one row per HTTP attempt, for the invariant
checks. The columns and the row format are `runfolder.history`'s; this module owns only the buffering.

The checks compare what clients were told against the ledger, so every attempt is kept, retries and replays
included. Lines are formatted as attempts end (`history_line`) and written in blocks: a write per attempt would
cost the generator more than the attempt itself at a few thousand a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

from runfolder.history import HISTORY_COLUMNS, Attempt, history_line

FLUSH_ROWS = 2000


class HistoryWriter:
    """Buffered CSV writer of `Attempt`s; `close` (idempotent) writes what is left."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[str] | None = path.open("w", newline="", encoding="utf-8")
        self._lines = [",".join(HISTORY_COLUMNS) + "\n"]
        self.written = 0

    def write(self, a: Attempt) -> None:
        self._lines.append(history_line(a))
        self.written += 1
        if len(self._lines) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self._file is None:
            return
        self._file.write("".join(self._lines))
        self._file.flush()
        self._lines.clear()

    def close(self) -> None:
        if self._file is None:
            return
        self.flush()
        self._file.close()
        self._file = None
