"""A worker's history on its way to the master over Locust's message channel, and the clock between them.

    worker                                                       master
    HistoryWriter ─► spool file (the worker's own disk)
    HistoryStream ── zlib batches of whole lines, seq-numbered ──►  HistorySink ─► history/worker-<i>.csv
                  ◄── ack(seq) ─────────────────────────────────
    ClockProbe   ◄── ping / pong, a few round trips at test start ─►  offset ± uncertainty per worker

The spool file is the buffer: rows are written there as they end (as a lone process writes its history), and
the stream sends what was written since the last batch. At most WINDOW batches are ever unacknowledged, so the
master's socket queue and the worker's memory stay bounded whatever the rate; when the master falls behind the
rows simply wait on the worker's disk (the backlog, reported every second) and are sent at the end, within a
bound. Rows that never arrived are counted by the master against each worker's own total, and the verdict
then says so: invariants checked over part of the history would be a pass for something not checked. Bytes
travel verbatim (the worker's own file, header included): the history format stays `runfolder.history`'s alone.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from runfolder.layout import RunFolder

BATCH_BYTES = 256 * 1024  # raw CSV per batch: ~1,200 rows, ~60 KiB on the wire at zlib level 1
WINDOW = 8  # unacknowledged batches per worker: bounds the master's queue to ~0.5 MiB per worker
ZLIB_LEVEL = 1  # 4x on history CSV at a fraction of level 6's CPU (scripts/bench_distributed.py)
BACKLOG_WARN_BYTES = 16 * 1024 * 1024  # a worker this far behind: the master is past its ingestion ceiling
MAX_CLOCK_UNCERTAINTY_S = 0.05  # a worker whose offset is not known this well is refused (late_ms is 50 ms)


@dataclass(frozen=True, slots=True)
class Batch:
    """One message's worth of history: `rows` whole lines, compressed."""

    seq: int
    rows: int
    data: bytes


class HistoryStream:
    """The worker side: reads the spool file from where the last batch ended, never past its last whole line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sent_offset = 0  # bytes of the spool file already in a batch
        self.acked_offset = 0  # bytes the master has written
        self.rows_sent = 0
        self._seq = 0
        self._unacked: dict[int, int] = {}  # seq → the spool offset its batch ends at
        self._file: IO[bytes] | None = None

    def next_batch(self) -> Batch | None:
        """The next batch to send, or None when the window is full (backpressure) or nothing new was written."""
        if len(self._unacked) >= WINDOW:
            return None
        if self._file is None:
            if not self.path.exists():
                return None
            self._file = self.path.open("rb")
        self._file.seek(self.sent_offset)
        chunk = self._file.read(BATCH_BYTES)
        end = chunk.rfind(b"\n") + 1
        if end == 0:
            return None  # nothing, or a line longer than a batch still being written
        chunk = chunk[:end]
        self._seq += 1
        batch = Batch(self._seq, chunk.count(b"\n"), zlib.compress(chunk, ZLIB_LEVEL))
        self.sent_offset += end
        self.rows_sent += batch.rows
        self._unacked[batch.seq] = self.sent_offset
        return batch

    def ack(self, seq: int) -> None:
        end = self._unacked.pop(seq, None)
        if end is not None:
            self.acked_offset = max(self.acked_offset, end)

    def backlog_bytes(self) -> int:
        """Spooled bytes the master has not yet written: how far behind it is for this worker."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return 0
        return max(0, size - self.acked_offset)

    def delivered(self) -> bool:
        return not self._unacked and self.backlog_bytes() == 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass(slots=True)
class _Incoming:
    file: IO[bytes]
    next_seq: int = 1
    rows: int = 0
    gaps: int = 0  # batches missing from the sequence (a worker restarted, a message lost)


@dataclass(slots=True)
class HistorySink:
    """The master side: each worker's batches appended to `history/worker-<index>.csv` in the run folder."""

    out_dir: Path
    _workers: dict[int, _Incoming] = field(default_factory=dict)

    def receive(self, index: int, seq: int, rows: int, data: bytes) -> None:
        incoming = self._workers.get(index)
        if incoming is None:
            path = RunFolder(self.out_dir).history_of(index)
            path.parent.mkdir(parents=True, exist_ok=True)
            incoming = self._workers[index] = _Incoming(path.open("wb"))
        if seq != incoming.next_seq:
            incoming.gaps += 1
        incoming.next_seq = seq + 1
        incoming.file.write(zlib.decompress(data))
        incoming.rows += rows

    def rows(self, index: int) -> int:
        """Lines received from worker `index`, its header included."""
        incoming = self._workers.get(index)
        return 0 if incoming is None else incoming.rows

    def gaps(self, index: int) -> int:
        incoming = self._workers.get(index)
        return 0 if incoming is None else incoming.gaps

    def close(self) -> None:
        for incoming in self._workers.values():
            incoming.file.close()


@dataclass(frozen=True, slots=True)
class ClockReading:
    """A worker's clock against the master's: worker time = master time + offset_s, within ± uncertainty_s."""

    offset_s: float
    uncertainty_s: float


def estimate_offset(samples: list[tuple[float, float, float]]) -> ClockReading | None:
    """From (master sent, worker's clock at reply, master received) round trips, the one with the shortest round
    trip (the least queueing): the worker read its clock somewhere inside it, so the midpoint is the estimate and
    half the round trip bounds its error (NTP's reasoning, without its filtering)."""
    if not samples:
        return None
    sent, worker, received = min(samples, key=lambda sample: sample[2] - sample[0])
    return ClockReading(offset_s=worker - (sent + received) / 2.0, uncertainty_s=(received - sent) / 2.0)
