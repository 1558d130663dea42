"""What each thing the generator keeps per attempt costs, without HTTP; writes docs/perf/attempt-costs.md.

    .venv/bin/python scripts/bench_attempt_costs.py [--repeats 5] [--out docs/perf/attempt-costs.md]

The generator keeps every semantic of an attempt (intended- and service-time HDR per second, late and dropped
arrivals, the per-attempt history, the client policies) and asks what each must cost. Each row times one of
them alone, as the generator calls it, in this process (Locust imported, so gevent has patched it as in a
worker): µs per call, the median of `--repeats` timeit runs with the spread. The reference in the same run is
the whole attempt's CPU, measured end to end by `scripts/bench_generator.py --cpu-at` (~80–90 µs on the
2-core machine of docs/performance.md): the rows say how much of it each semantic is.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

from locust.env import Environment  # patches the process with gevent, as in a Locust worker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests.generator.answers import read_answer  # noqa: E402
from loadtests.generator.health import LagMeter  # noqa: E402
from loadtests.generator.history import HistoryWriter  # noqa: E402
from loadtests.generator.http1 import Headers  # noqa: E402
from loadtests.generator.payer import new_key  # noqa: E402
from loadtests.generator.transport import Reply  # noqa: E402
from loadtests.generator.windows import Window, new_histogram, record_counted  # noqa: E402
from runfolder.history import Attempt, history_line  # noqa: E402

ROW = {
    "payment_id": "4f1c" * 8, "key": "9ab2" * 8, "attempt": 1, "user_id": "u000123", "card_id": "u000123-c1",
    "channel": "ICBC", "amount_fen": 123456, "intended": 1.764e9, "sent": 1.764e9 + 0.0003,
    "done": 1.764e9 + 0.0011, "status": 201, "code": "", "outcome": "succeeded", "repayment_id": "rp_0123456789",
    "replica": "r1", "business_date": "2026-11-11", "replayed": False, "part": 0,
}  # fmt: skip
BODY = b'{"repayment_id":"rp_0123456789","status":"succeeded","replica":"r1","business_date":"2026-11-11"}'


def per_call_us(action: Callable[[], object], repeats: int, number: int = 50_000) -> list[float]:
    action()
    return [1e6 * t / number for t in timeit.repeat(action, number=number, repeat=repeats)]


def cases(work: Path) -> list[tuple[str, str, Callable[[], object]]]:
    attempt = Attempt(**ROW)  # type: ignore[arg-type]
    history = HistoryWriter(work / "history.csv")
    window = Window(0)
    lag = LagMeter()
    reply = Reply(201, BODY, Headers({"content-type": "application/json", "x-replica": "r1"}))
    environment = Environment()
    environment.create_local_runner()  # Locust's statistics listen to the request event, as in a run
    fire = environment.events.request.fire
    context = {"intended": 1.0, "attempt": 1, "part": 0, "payment_id": "p", "key": "k", "outcome": "succeeded"}

    def request_event() -> None:
        fire(
            request_type="POST", name="/v1/repayments", response_time=0.8, response_length=len(BODY),
            response=reply, context=context, exception=None, start_time=time.time(), url="http://x/v1/repayments",
        )  # fmt: skip

    def windows_record() -> None:
        window.record("succeeded", intended_us=1100.4, service_us=800.2, replica="r1", amount_fen=123456)

    intended_us = [900 + k % 700 for k in range(5000)]  # a second at 5,000/s: a few hundred distinct values
    service_us = [600 + k % 500 for k in range(5000)]
    intended, service = new_histogram(), new_histogram()

    def hdr_fold() -> None:  # the second's latencies into both histograms, as counted values
        record_counted(intended, list(intended_us))
        record_counted(service, list(service_us))

    return [
        ("history row object", "Attempt(...) — 18 fields, slotted", lambda: Attempt(**ROW)),  # type: ignore[arg-type]
        ("history line", "history_line(attempt)", lambda: history_line(attempt)),
        (
            "history write",
            "HistoryWriter.write: the line, buffered, a block write per 2,000",
            lambda: history.write(attempt),
        ),
        ("windows", "Window.record: counts, codes, replica, amount, two latencies kept", windows_record),
        ("HDR, per attempt", "a second's 5,000 latencies of each kind into two histograms, / 5,000", hdr_fold),
        ("wake-up lag", "LagMeter.record (its HDR record is batched likewise)", lambda: lag.record(0.4)),
        ("Locust's statistics", "events.request.fire with Locust's stats listening", request_event),
        ("idempotency key", "new_key(): 16 random bytes as hex", new_key),
        ("reading the answer", "answers.read_answer of a 201 JSON body", lambda: read_answer(reply)),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "perf" / "attempt-costs.md")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="surge-bench-") as tmp:
        for name, what, action in cases(Path(tmp)):
            number = 20 if name == "HDR, per attempt" else 50_000
            times = per_call_us(action, args.repeats, number)
            if name == "HDR, per attempt":
                times = [t / 5000 for t in times]
            rows.append((name, what, times))
            print(f"{name:24s} {statistics.median(times):7.2f} µs ({min(times):.2f}–{max(times):.2f})", flush=True)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    lines = [
        "## What each semantic of an attempt costs",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores (load average at"
        f" the end: {load}) with `scripts/bench_attempt_costs.py --repeats {args.repeats}`: each operation alone,",
        "as the generator calls it per attempt, in a process Locust has patched; µs per call, median of the",
        "repeats (min–max). For scale: a whole attempt costs the generator ~80–90 µs of CPU end to end",
        "(`scripts/bench_generator.py --cpu-at 5000`, above), most of it the HTTP exchange and gevent.",
        "",
        "| semantic | what is timed | µs per attempt |",
        "| --- | --- | ---: |",
    ]
    for name, what, times in rows:
        lines.append(f"| {name} | {what} | {statistics.median(times):.2f} ({min(times):.2f}–{max(times):.2f}) |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
