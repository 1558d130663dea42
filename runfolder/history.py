"""history/<worker>.csv: one row per HTTP attempt, written by the Locust process and read by the reports.

The row format is here alone so that the generator's writer and every reader agree on the columns; beside it,
the sample of a target's answer no response rule matched (`history/<worker>.unmatched.json`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from runfolder.layout import RunFolder, RunFolderError, read_json_object
from runfolder.outcomes import OutcomeClass

HISTORY_COLUMNS: Final[tuple[str, ...]] = (
    *("payment_id", "key", "attempt", "user_id", "card_id", "channel", "amount_fen", "intended", "sent", "done"),
    *("status", "code", "outcome", "repayment_id", "replica", "business_date", "replayed", "part"),
    *("settlement", "settle_code", "final_at", "polls", "callbacks", "callback_refused", "callback_dups"),
    *("callback_status", "flipped_to"),
)
SETTLEMENT_COLUMNS: Final[tuple[str, ...]] = HISTORY_COLUMNS[18:]  # absent from folders written before them


@dataclass(slots=True)
class Attempt:
    """One history row; times are unix seconds, `status` 0 when no response came back, `part` the index of a
    split-plan part (0 otherwise). Not frozen: a frozen dataclass sets each of its 18 fields through
    object.__setattr__, 2.1 µs per attempt against 0.4 µs, and nothing changes a row once it is made."""

    payment_id: str
    key: str
    attempt: int
    user_id: str
    card_id: str
    channel: str
    amount_fen: int
    intended: float
    sent: float
    done: float
    status: int
    code: str
    outcome: OutcomeClass
    repayment_id: str
    replica: str
    business_date: str
    replayed: bool
    part: int
    # asynchronous settlement (a 202 answer), filled in by the watcher before the row is written; defaults for
    # every other attempt
    settlement: str = ""
    settle_code: str = ""
    final_at: float = 0.0  # unix time the client first learned the final state; 0 when it never did
    polls: int = 0
    callbacks: int = 0  # validly signed deliveries received for the payment
    callback_refused: int = 0  # of those, answered 500 on purpose (the scenario's callback_fail_ratio)
    callback_dups: int = 0  # deliveries received after one had been acknowledged
    callback_status: str = ""  # the final state the first delivery carried
    flipped_to: str = ""  # a final state reported later (poll or callback) that differs from the one learned


_HISTORY_LINE: Final = "%s,%s,%d,%s,%s,%s,%d,%.6f,%.6f,%.6f,%d,%s,%s,%s,%s,%s,%s,%d,%s,%s,%.6f,%d,%d,%d,%d,%s,%s\n"
_NEEDS_QUOTING: Final = re.compile(r'[,"\r\n]')


def history_line(a: Attempt) -> str:
    """One attempt as a line of the history CSV, in HISTORY_COLUMNS order ("\n" line ends, times with 6 decimals).

    Formatted with one `%` when no text needs quoting — 1 µs instead of 3.3 µs through csv.writer, per attempt
    the generator sends — as csv.writer would write it. A text with a comma, quote or line break (a code,
    replica or id a target chose may hold anything) makes csv.writer write the line with every cell quoted:
    with "\n" as its line end it would leave a lone "\r" unquoted, and the line would not read back."""
    texts = (a.payment_id, a.key, a.user_id, a.card_id, a.channel, a.code, a.outcome, a.repayment_id, a.replica,
             a.business_date, a.settle_code)  # fmt: skip
    cells = (
        a.payment_id, a.key, a.attempt, a.user_id, a.card_id, a.channel, a.amount_fen, a.intended, a.sent, a.done,
        a.status, a.code, a.outcome, a.repayment_id, a.replica, a.business_date, "true" if a.replayed else "false",
        a.part, a.settlement, a.settle_code, a.final_at, a.polls, a.callbacks, a.callback_refused, a.callback_dups,
        a.callback_status, a.flipped_to,
    )  # fmt: skip
    if not _NEEDS_QUOTING.search("".join(texts)):
        return _HISTORY_LINE % cells
    buffer = io.StringIO()
    times = {7: f"{a.intended:.6f}", 8: f"{a.sent:.6f}", 9: f"{a.done:.6f}", 20: f"{a.final_at:.6f}"}
    quoted = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    quoted.writerow([times.get(k, cell) for k, cell in enumerate(cells)])
    return buffer.getvalue()


def history_rows(run_dir: Path) -> Iterator[dict[str, str]]:
    """Every attempt of history/*.csv as text by column, file by file in name order: for a reader that needs a
    few columns without the report stack (which reads the whole table typed, through Arrow). RunFolderError for a
    file that is not a history file; the settlement columns may be absent (a folder written before them)."""
    required = [name for name in HISTORY_COLUMNS if name not in SETTLEMENT_COLUMNS]
    for path in sorted(RunFolder(run_dir).history.glob("*.csv")):
        try:
            with path.open(encoding="utf-8", newline="") as handle:
                rows = csv.DictReader(handle)
                missing = [name for name in required if name not in (rows.fieldnames or ())]
                if missing:
                    raise RunFolderError(f"{path}: not a history file (no {', '.join(missing)})")
                yield from rows
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise RunFolderError(f"{path}: unreadable history ({exc})") from exc


def read_unmatched_sample(run_dir: Path) -> dict[str, Any] | None:
    """The first `history/<worker>.unmatched.json`: a 2xx answer of a target that no response rule matched,
    as the generating process kept it (`{"status", "body", "cut"}`); None when no process kept one."""
    for path in sorted(RunFolder(run_dir).history.glob("*.unmatched.json")):
        with contextlib.suppress(RunFolderError):
            return read_json_object(path, required=False) or None
    return None
