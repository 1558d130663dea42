"""What a distributed run's history costs (docs/distributed.md, "Speed and scale"), measured in one process:

1. A worker: CPU per history row written to its spool file alone (what a lone process pays) against written and
   streamed (read back, zlib level 1, framed as a Locust message with msgpack) — the extra per row, and as a
   share of a whole arrival's cost (`--arrival-us`, ~85 µs measured by bench_generator.py).
2. The master: 50 simulated workers, each sending one windows message a second and history batches as full as
   stream.BATCH_BYTES lets them; the master's work per message (msgpack decode, zlib decompress, append to
   history/worker-N.csv, merge the window) on one core. The ceiling is the rows/s it ingests; divided by the
   rows a worker sends a second it gives how many workers one master core takes.

    .venv/bin/python scripts/bench_distributed.py [--rows 200000] [--repetitions 3] [--workers 50]

CPU is process time (user + system), so the machine's other load moves it less than wall time; the spread of the
repetitions is printed with the median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgpack

from loadtests.generator.history import HistoryWriter
from loadtests.generator.stream import HistorySink, HistoryStream
from loadtests.generator.windows import Window
from runfolder.history import Attempt


def attempt(n: int) -> Attempt:
    return Attempt(
        payment_id=f"{n:032x}", key=f"s1234abcd{n:023x}", attempt=1, user_id=f"u{n % 50000:06d}",
        card_id=f"c{n % 90000:07d}", channel="ICBC", amount_fen=100_000 + n % 977, intended=1.8e9 + n / 1000,
        sent=1.8e9 + n / 1000 + 0.0004, done=1.8e9 + n / 1000 + 0.031, status=201, code="", outcome="succeeded",
        repayment_id=f"r{n:031x}", replica="r2", business_date="2026-11-11", replayed=False, part=0,
    )  # fmt: skip


def cpu(work: Callable[[], None]) -> float:
    start = time.process_time()
    work()
    return time.process_time() - start


def worker_costs(rows: int, folder: Path) -> tuple[float, float]:
    """µs of CPU per row: spooled only, spooled and streamed."""
    made = [attempt(n) for n in range(rows)]

    def local() -> None:
        writer = HistoryWriter(folder / "local.csv")
        for row in made:
            writer.write(row)
        writer.close()

    def streamed() -> None:
        path = folder / "spool.csv"
        writer = HistoryWriter(path)
        stream = HistoryStream(path)
        for number, row in enumerate(made):
            writer.write(row)
            if number % 2000 == 1999:  # the worker flushes its spool every second and the stream reads it
                writer.flush()
                while (batch := stream.next_batch()) is not None:
                    msgpack.dumps(("surge_history", {"index": 1, "seq": batch.seq, "rows": batch.rows,
                                                     "data": batch.data}, "node"))  # fmt: skip
                    stream.ack(batch.seq)
        writer.close()
        while (batch := stream.next_batch()) is not None:
            msgpack.dumps(
                ("surge_history", {"index": 1, "seq": batch.seq, "rows": batch.rows, "data": batch.data}, "n")
            )
            stream.ack(batch.seq)
        stream.close()

    return cpu(local) / rows * 1e6, cpu(streamed) / rows * 1e6


def window_message(second: int) -> bytes:
    window = Window(second)
    window.offered = window.sent = 5000
    for n in range(200):
        window.record("succeeded", intended_us=20_000 + n * 50, service_us=19_000 + n * 50, code="", replica="r1",
                      amount_fen=100_000)  # fmt: skip
    window.workers = 1
    return bytes(msgpack.dumps(("surge_windows", {"index": 1, "windows": [window.to_json()], "lag": None,
                                                  "history": {"lines": 1, "backlog": 0}}, "n")))  # fmt: skip


def master_ceiling(workers: int, seconds: int, folder: Path) -> tuple[float, float, int]:
    """History rows/s and windows messages/s one core ingests (each alone), and the rows in one batch."""
    made = [attempt(n) for n in range(1400)]
    writer = HistoryWriter(folder / "one.csv")
    for row in made:
        writer.write(row)
    writer.close()
    stream = HistoryStream(folder / "one.csv")
    batch = stream.next_batch()
    stream.close()
    assert batch is not None
    history = bytes(msgpack.dumps(("surge_history", {"index": 0, "seq": 1, "rows": batch.rows, "data": batch.data},
                                   "n")))  # fmt: skip
    windows = window_message(0)
    sink = HistorySink(folder / "run")
    merged: dict[int, Window] = {}

    def ingest_history() -> None:
        for second in range(seconds):
            for index in range(workers):
                _, data, _ = msgpack.loads(history, raw=False, strict_map_key=False)
                sink.receive(index, data["seq"] + second, data["rows"], data["data"])

    def ingest_windows() -> None:
        for second in range(seconds):
            for _ in range(workers):
                _, data, _ = msgpack.loads(windows, raw=False, strict_map_key=False)
                for line in data["windows"]:
                    window = Window.from_json({**line, "t": second})
                    merged.setdefault(second, Window(second)).merge(window)

    history_s = cpu(ingest_history)
    windows_s = cpu(ingest_windows)
    sink.close()
    return workers * seconds * batch.rows / history_s, workers * seconds / windows_s, batch.rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--arrival-us", type=float, default=85.0, help="CPU per arrival of a worker (µs)")
    args = parser.parse_args()
    local, streamed, rows_s, windows_s = [], [], [], []
    for _ in range(args.repetitions):
        with tempfile.TemporaryDirectory() as tmp:
            a, b = worker_costs(args.rows, Path(tmp))
            local.append(a)
            streamed.append(b)
            r, w, batch_rows = master_ceiling(args.workers, 10, Path(tmp))
            rows_s.append(r)
            windows_s.append(w)
    extra = [b - a for a, b in zip(local, streamed, strict=True)]
    result = {
        "worker_local_us_per_row": [round(x, 2) for x in local],
        "worker_streamed_us_per_row": [round(x, 2) for x in streamed],
        "streaming_extra_us_per_row": [round(x, 2) for x in extra],
        "streaming_extra_share_of_arrival": round(statistics.median(extra) / args.arrival_us, 4),
        "master_rows_per_s_one_core": [round(x) for x in rows_s],
        "master_window_messages_per_s_one_core": [round(x) for x in windows_s],
        "rows_per_batch": batch_rows,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
