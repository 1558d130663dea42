"""The history's way from a worker's spool file to the master's run folder (stream.py), and the clock estimate.

No Locust here: the stream and the sink are plain objects, so batching, the bounded window (backpressure) and
the count of undelivered rows are tested directly; test_distributed.py runs them across hosts.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from loadtests.generator.history import HistoryWriter
from loadtests.generator.stream import (
    BATCH_BYTES,
    WINDOW,
    ClockReading,
    HistorySink,
    HistoryStream,
    estimate_offset,
)
from runfolder.history import Attempt


def attempt(n: int) -> Attempt:
    return Attempt(
        payment_id=f"p{n}", key=f"k{n}", attempt=1, user_id=f"u{n % 7}", card_id=f"c{n % 5}", channel="ICBC",
        amount_fen=100 + n, intended=1000.0 + n, sent=1000.0 + n, done=1000.1 + n, status=201, code="",
        outcome="succeeded", repayment_id=f"r{n}", replica="r1", business_date="2026-11-11", replayed=False, part=0,
    )  # fmt: skip


def spool(tmp_path: Path, rows: int) -> Path:
    """A worker's spool file of `rows` history rows (and its header)."""
    path = tmp_path / "spool" / "worker-1.csv"
    writer = HistoryWriter(path)
    for n in range(rows):
        writer.write(attempt(n))
    writer.close()
    return path


def test_every_row_arrives_byte_for_byte_in_order(tmp_path: Path) -> None:
    path = spool(tmp_path, 5000)
    stream, sink = HistoryStream(path), HistorySink(tmp_path / "run")
    while (batch := stream.next_batch()) is not None or not stream.delivered():
        assert batch is not None
        sink.receive(1, batch.seq, batch.rows, batch.data)
        stream.ack(batch.seq)
    sink.close()
    stream.close()
    assert (tmp_path / "run" / "history" / "worker-1.csv").read_bytes() == path.read_bytes()
    assert sink.rows(1) == 5001 == stream.rows_sent  # the header is a line too
    assert stream.backlog_bytes() == 0


def test_a_batch_never_cuts_a_line_and_stays_under_its_size(tmp_path: Path) -> None:
    path = spool(tmp_path, 3000)
    with path.open("ab") as handle:
        handle.write(b"half a line without its end")  # a row being written when the stream reads
    stream = HistoryStream(path)
    sizes = []
    while (batch := stream.next_batch()) is not None:
        raw = zlib.decompress(batch.data)
        assert raw.endswith(b"\n") and raw.count(b"\n") == batch.rows
        sizes.append(len(raw))
        stream.ack(batch.seq)
    stream.close()
    assert max(sizes) <= BATCH_BYTES and stream.sent_offset == path.stat().st_size - len(b"half a line without its end")


def test_the_window_bounds_what_is_unacknowledged_and_the_rest_waits_on_disk(tmp_path: Path) -> None:
    """A master that does not acknowledge (behind its ceiling) gets WINDOW batches and no more; the rows wait in
    the spool file (the backlog), and every ack lets one more batch go."""
    path = spool(tmp_path, 40_000)  # ~6 MiB: many more batches than the window
    stream = HistoryStream(path)
    sent = []
    while (batch := stream.next_batch()) is not None:
        sent.append(batch)
    assert len(sent) == WINDOW
    assert stream.backlog_bytes() == path.stat().st_size  # nothing acknowledged yet
    stream.ack(sent[0].seq)
    assert stream.next_batch() is not None and stream.next_batch() is None
    assert 0 < stream.backlog_bytes() < path.stat().st_size
    stream.close()


def test_rows_never_delivered_are_counted_against_the_worker_total(tmp_path: Path) -> None:
    path = spool(tmp_path, 3000)
    stream, sink = HistoryStream(path), HistorySink(tmp_path / "run")
    first = stream.next_batch()
    assert first is not None
    sink.receive(1, first.seq, first.rows, first.data)  # the rest never arrives (a worker lost, a drain cut)
    sink.close()
    stream.close()
    lines = 3001  # what the worker reports it spooled, its header included
    assert lines - sink.rows(1) == lines - first.rows > 0
    assert not stream.delivered()


def test_a_gap_in_the_sequence_is_noticed(tmp_path: Path) -> None:
    path = spool(tmp_path, 3000)
    stream, sink = HistoryStream(path), HistorySink(tmp_path / "run")
    one, two = stream.next_batch(), stream.next_batch()
    assert one is not None and two is not None
    sink.receive(0, two.seq, two.rows, two.data)
    sink.close()
    stream.close()
    assert sink.gaps(0) == 1  # the master writes what came; the rows of the lost batch count as missing


@pytest.mark.parametrize("offset", [0.0, 2.0, -3.5])
def test_the_clock_offset_is_read_from_the_shortest_round_trip(offset: float) -> None:
    # master sent, worker's clock when it answered, master received; the 2nd sample queued 40 ms on the way back
    samples = [(10.0, 10.0045 + offset, 10.010), (11.0, 11.003 + offset, 11.046), (12.0, 12.002 + offset, 12.004)]
    reading = estimate_offset(samples)
    assert reading is not None
    assert reading.offset_s == pytest.approx(offset, abs=1e-9)
    assert reading.uncertainty_s == pytest.approx(0.002)
    assert estimate_offset([]) is None
    assert ClockReading(1.0, 0.1) == ClockReading(1.0, 0.1)
