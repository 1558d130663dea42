"""Benchmark: what the durable ledger step alone costs a repayment, by group-commit batch size; no HTTP.

    .venv/bin/python scripts/bench_ledger.py [--rows 20000] [--no-write]

Drives mock_gateway.replica.ledger.Ledger exactly as a replica does — `await record(charge)` from many coroutines,
one transaction per event-loop turn — with batches of 1, 10, 25 and 50 concurrent records on a fresh WAL ledger
(`synchronous=NORMAL`, the default) in a temp dir, 10,007 users and 30,011 cards as in bench_gateway.py. Prints
the process CPU time per recorded row (both threads: the loop's commits and the writer's checkpoints) and writes
docs/perf/ledger.md. It prices the floor under any replica: docs/gateway.md "Performance" compares it with
what aiohttp leaves of the bare handler's budget. A script, never a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mock_gateway.clock import SimClock  # noqa: E402
from mock_gateway.config_sources import load_config  # noqa: E402
from mock_gateway.replica.ledger import Ledger  # noqa: E402
from mock_gateway.rules import make_decider  # noqa: E402  # the repo root is put on sys.path just above
from mock_gateway.validation import Charge  # noqa: E402

OUT = REPO / "docs" / "perf" / "ledger.md"
BATCHES = (1, 10, 25, 50)


async def _nothing() -> None:
    return None


async def baseline(batch: int, rows: int) -> float:
    """CPU µs per row of the driving alone (a task per record, gathered), to subtract."""
    cpu = time.process_time()
    for _ in range(rows // batch):
        await asyncio.gather(*(_nothing() for _ in range(batch)))
    return (time.process_time() - cpu) / (rows // batch * batch) * 1e6


async def measure(folder: Path, batch: int, rows: int) -> tuple[float, float]:
    """(CPU µs per row, wall µs per row) for `rows` records in groups of `batch` concurrent ones."""
    config = load_config(None, env={}, overrides={"limits": {"user_daily_fen": 10**12}})
    channel = config.channels[0]
    clock = SimClock.from_config(config.clock)
    ledger = Ledger(folder / f"ledger-{batch}.sqlite", replica="r1", clock=clock, decide=make_decider(config, "r1"))
    await ledger.open()
    try:
        counter = 0

        def charge() -> Charge:
            nonlocal counter
            counter += 1
            user, card = f"u{counter % 10007}", f"c{counter % 30011}"
            return Charge(f"bench-{batch}-{counter}", f"{counter:064x}", user, card, channel.code, 1)

        for _ in range(200 // batch + 1):  # warm the page cache and the statement cache
            await asyncio.gather(*(ledger.record(charge()) for _ in range(batch)))
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(rows // batch):
            await asyncio.gather(*(ledger.record(charge()) for _ in range(batch)))
        done = rows // batch * batch
        return (time.process_time() - cpu) / done * 1e6, (time.perf_counter() - wall) / done * 1e6
    finally:
        await ledger.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--no-write", action="store_true", help=f"do not write {OUT.relative_to(REPO)}")
    args = parser.parse_args()
    results: list[tuple[int, float, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="surge-bench-ledger-") as tmp:
        for batch in BATCHES:
            cpu_us, wall_us = asyncio.run(measure(Path(tmp), batch, args.rows))
            driving_us = asyncio.run(baseline(batch, args.rows))
            results.append((batch, cpu_us, wall_us, driving_us))
            print(
                f"batch {batch:>3}: {cpu_us:6.1f} µs CPU per row ({driving_us:.1f} of it driving), "
                f"{wall_us:6.1f} µs wall per row",
                flush=True,
            )
    if not args.no_write:
        rows = "\n".join(f"| {b} | {c:.1f} | {d:.1f} | **{c - d:.1f}** | {w:.1f} |" for b, c, w, d in results)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(
            f"""## Ledger step alone (no HTTP)

Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `.venv/bin/python scripts/bench_ledger.py --rows {args.rows}`
(SQLite {sqlite3.sqlite_version}): `Ledger.record` driven as a replica drives it — concurrent records, one
transaction per event-loop turn — on a fresh WAL ledger (`synchronous=NORMAL`), per group-commit batch size.
Each row is a 201: the idempotency re-check, the daily-cap totals, `decide` (rules and the 201 body), two
inserts, the commit.

| batch (records per commit) | CPU µs per row | of it, driving (a task per record) | ledger step | wall µs per row |
| ---: | ---: | ---: | ---: | ---: |
{rows}

Under wrk -c64 a replica's batches hold ~20–35 records (its `surge_gateway_ledger_batch_size` histogram).
""",
            encoding="utf-8",
        )
        print(f"wrote {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
