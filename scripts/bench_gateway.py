"""Benchmark: one gateway replica against a bare aiohttp handler, same load generator, same run.

What each mode measures and how, step by step: docs/perf/README.md. A script, never a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "perf" / "gateway.md"
ASYNC_OUT = REPO / "docs" / "perf" / "gateway-async.md"
ASYNC_VARIANTS: dict[str, dict[str, object]] = {
    "sync": {},
    # the same variant measured twice: its ratio to the first is the method's own noise, the band any other
    # variant's ratio must leave before it says something
    "sync, again": {},
    "sync, bank latency 20/120 ms": {"latency_ms": {"median": 20, "p99": 120}},
    "async acceptance": {"settlement": "async", "tps": 0.001, "settle_ms": {"median": 0, "p99": 0}},
    "async with settlement": {"settlement": "async", "tps": 0, "settle_ms": {"median": 0, "p99": 0}},
}

BARE_SERVER = """
import json
import socket
import sys
from aiohttp import web
import uvloop

BODY = b'{"repayment_id": "rp_0123456789abcdef0123456789abcdef", "status": "succeeded", "user_id": "u1", ' \\
       b'"card_id": "c1", "channel": "ICBC", "amount_fen": 100, "business_date": "2026-11-11", "replica": "r1", ' \\
       b'"remaining": {"card_fen": 4999900, "user_fen": 19999900}}'

async def handler(request: web.Request) -> web.Response:
    return web.Response(status=201, body=BODY, content_type="application/json")

async def floor(request: web.Request) -> web.Response:
    json.loads(await request.read())
    return web.Response(status=201, body=BODY, content_type="application/json")

async def ready(request: web.Request) -> web.Response:
    return web.Response(text="ok")

@web.middleware
async def stamp(request: web.Request, handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers["X-Replica"] = "r1"
    return response

is_floor = sys.argv[1] == "floor"
app = web.Application(middlewares=[stamp] if is_floor else [])
app.router.add_post("/v1/repayments", floor if is_floor else handler)
app.router.add_get("/readyz", ready)
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(1024)
print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
web.run_app(app, sock=sock, access_log=None, print=None, loop=uvloop.new_event_loop())
"""

WRK_SCRIPT = """
local counter = 0
local prefix = "k"
local threads = 0

function setup(thread)
  thread:set("thread_id", threads)
  threads = threads + 1
end

function init(args)
  math.randomseed(os.time() + (thread_id or 0))
  prefix = string.format("%d-%d-%d", os.time(), thread_id or 0, math.random(1, 1000000000))
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"user_id":"u%d","card_id":"c%d","channel":"ICBC","amount_fen":100}', counter % 10007, counter % 30011)
  wrk.headers["Idempotency-Key"] = prefix .. "-" .. counter
  return wrk.format("POST", "/v1/repayments", wrk.headers, body)
end
"""


def start(command: list[str]) -> tuple[subprocess.Popen[str], str]:
    """A server that binds port 0 itself and prints `listening on URL`: its process and URL. (Picking a free port
    here for the server to bind later is a race: another process can take the port in between.)"""
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        found = re.search(r"listening on (http://\S+)", line)
        if found:
            # Keep reading so a chatty server never blocks on a full pipe.
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return process, found.group(1)
    stop(process)
    raise SystemExit(f"{command[-1]!r} exited with {process.returncode} before it listened")


def wait_ready(url: str, process: subprocess.Popen[str], timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as response:  # noqa: S310  # loopback only
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} not ready within {timeout_s} s")


def pin(core: int | None) -> list[str]:
    return ["taskset", "-c", str(core)] if core is not None else []


def run_wrk(url: str, script: Path, duration: int, connections: int, core: int | None) -> tuple[float, int, int]:
    """(req/s, requests, non-2xx responses)."""
    command = [
        *pin(core),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        "-s",
        str(script),
        url + "/v1/repayments",
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=duration + 60).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if rate is None or total is None:
        raise SystemExit(f"cannot read wrk output:\n{output}")
    return float(rate.group(1)), int(total.group(1)), int(non_2xx.group(1)) if non_2xx else 0


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def replica_config(folder: Path, channel_extra: dict[str, object] | None = None) -> Path:
    huge = 10**9
    channel = {
        "code": "ICBC",
        "single_fen": 5_000_000,
        "card_daily_fen": 5_000_000,
        "concurrency": 10_000,
        "latency_ms": {"median": 0, "p99": 0},
        **(channel_extra or {}),
    }
    config = {
        "limits": {"global_tps": huge, "replica_tps": huge, "user_tps": huge, "user_daily_fen": 20_000_000},
        "channels": [channel],
        "ledger": {"path": str(folder / "ledger.sqlite")},
        "admin": {"token": "bench"},
    }
    path = folder / "config.json"
    path.write_text(json.dumps(config))
    return path


def ledger_rows(folder: Path) -> int:
    with sqlite3.connect(folder / "ledger.sqlite") as conn:
        return int(conn.execute("SELECT COUNT(*) FROM repayments").fetchone()[0])


@dataclass
class Placement:
    """One way of placing the processes on the cores, with its measurements."""

    name: str
    server_core: int | None
    wrk_core: int | None
    bare: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    replica: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def ratios(self) -> list[float]:
        return [b / a for a, b in zip(self.bare, self.replica, strict=True)]

    def floor_ratios(self) -> list[float]:
        return [c / a for a, c in zip(self.bare, self.floor, strict=True)]

    def summary(self) -> str:
        ratios, floors = self.ratios(), self.floor_ratios()
        return (
            f"{self.name}: bare median {statistics.median(self.bare):,.0f} req/s, replica median "
            f"{statistics.median(self.replica):,.0f} req/s, ratio b/a median {statistics.median(ratios):.2f} "
            f"(min {min(ratios):.2f}, max {max(ratios):.2f}; target >= 0.5); aiohttp floor c/a median "
            f"{statistics.median(floors):.2f} (min {min(floors):.2f}, max {max(floors):.2f})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds of wrk per measurement")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--no-write", action="store_true", help="do not write the docs/perf page")
    parser.add_argument(
        "--async-channel", action="store_true", help="CPU per request: a sync channel against an async one"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench_gateway: wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 3
    if args.async_channel:
        return bench_async(args)
    placements = [Placement("unpinned (the OS places every process and thread)", None, None)]
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        placements.insert(0, Placement("pinned (server on core 0, wrk on core 1)", 0, 1))
    with tempfile.TemporaryDirectory(prefix="surge-bench-") as tmp:
        folder = Path(tmp)
        script = folder / "post.lua"
        script.write_text(WRK_SCRIPT)
        bare_script = folder / "bare.py"
        bare_script.write_text(BARE_SERVER)
        for rep in range(args.repetitions):
            for placement in placements:
                measure(placement, rep, folder, script, bare_script, args)
    for placement in placements:
        print(placement.summary())
    if not args.no_write:
        write_report(args, placements)
        print(f"wrote {OUT.relative_to(REPO)}")
    return 0


def measure(
    placement: Placement, rep: int, folder: Path, script: Path, bare_script: Path, args: argparse.Namespace
) -> None:
    """A bare run, a floor run, then a replica run (fresh ledger), same wrk settings, same placement."""
    for variant, rates in (("bare", placement.bare), ("floor", placement.floor)):
        process, url = start([*pin(placement.server_core), sys.executable, str(bare_script), variant])
        try:
            wait_ready(url, process)
            rate, _, _ = run_wrk(url, script, args.duration, args.connections, placement.wrk_core)
            rates.append(rate)
        finally:
            stop(process)
    run_dir = folder / f"replica-{placement.server_core}-{rep}"
    run_dir.mkdir()
    command = [sys.executable, "-m", "mock_gateway", "--config", str(replica_config(run_dir)), "--port", "0"]
    process, url = start([*pin(placement.server_core), *command])
    try:
        wait_ready(url, process)
        rate, total, non_2xx = run_wrk(url, script, args.duration, args.connections, placement.wrk_core)
        placement.replica.append(rate)
    finally:
        stop(process)
    rows = ledger_rows(run_dir)
    placement.notes.append(f"{total} requests, {non_2xx} non-2xx, {rows} ledger rows")
    print(
        f"rep {rep + 1} {placement.name.split()[0]}: bare {placement.bare[-1]:,.0f} req/s, "
        f"floor {placement.floor[-1]:,.0f} req/s, "
        f"replica {placement.replica[-1]:,.0f} req/s ({placement.notes[-1]})",
        flush=True,
    )


def bench_async(args: argparse.Namespace) -> int:
    """Each variant side by side with the sync reference: both replicas on one core at the same time, each loaded
    by its own wrk, so whatever the machine does meanwhile (other guests, clock drift) hits both alike."""
    two_cores = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    server_core, wrk_core = (0, 1) if two_cores else (None, None)
    reference, *others = ASYNC_VARIANTS.items()
    ratios: dict[str, list[float]] = {name: [] for name, _ in others}
    cpu: dict[str, list[float]] = {name: [] for name, _ in others}
    non_2xx: dict[str, int] = {name: 0 for name, _ in others}
    with tempfile.TemporaryDirectory(prefix="surge-bench-") as tmp:
        folder = Path(tmp)
        script = folder / "post.lua"
        script.write_text(WRK_SCRIPT)
        for rep in range(args.repetitions):
            for number, (name, extra) in enumerate(others):
                # which of the two starts first alternates: the first is warm a moment longer
                pair = [reference, (name, extra)] if rep % 2 == 0 else [(name, extra), reference]
                measured = side_by_side(folder / f"{rep}-{number}", pair, script, args, server_core, wrk_core)
                (ref_us, _, _), (us, rate, failed) = measured[reference[0]], measured[name]
                ratios[name].append(us / ref_us)
                cpu[name].append(us)
                non_2xx[name] += failed
                print(
                    f"rep {rep + 1} {name}: {us:.0f} µs CPU a request against sync's {ref_us:.0f} "
                    f"(ratio {us / ref_us:.3f}, {rate:,.0f} req/s, {failed} non-2xx)",
                    flush=True,
                )
    lines = [
        f"| {name} | {statistics.median(runs):.3f} ({min(runs):.3f}–{max(runs):.3f}) | {statistics.mean(runs):.3f} "
        f"± {statistics.stdev(runs) / len(runs) ** 0.5:.3f} | {statistics.median(cpu[name]):.0f} "
        f"| {', '.join(f'{r:.2f}' for r in runs)} | {non_2xx[name]} |"
        for name, runs in ratios.items()
    ]
    table = (
        "| variant | CPU a request against sync beside it: median (range) | mean ± standard error "
        "| µs CPU a request (median, sharing a core) | ratio per repetition | non-2xx |\n"
        "| --- | ---: | ---: | ---: | --- | ---: |\n" + "\n".join(lines)
    )
    print(table)
    if not args.no_write:
        ASYNC_OUT.write_text(
            f"""# Gateway replica: CPU per request, sync against async channels

Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with

    .venv/bin/python scripts/bench_gateway.py --async-channel --duration {args.duration} \\
        --repetitions {args.repetitions} --connections {args.connections}

- Side by side: each variant runs at the same time as the reference (*sync*), both replicas
  {"pinned to core 0, the two wrk to core 1" if two_cores else "unpinned"}; each replica is loaded by its own
  wrk -t1 -c{args.connections // 2} -d{args.duration}s (POST /v1/repayments, a unique Idempotency-Key per request,
  10,007 users and 30,011 cards). Which of the two starts first alternates between repetitions.
- Why: on this shared virtual machine the CPU a request costs moves by ±15 % from one run to the next (other
  guests on the host); runs one after the other carried that into every ratio. Two replicas sharing one core in
  the same seconds see the same machine, and the ratio of the same variant to itself (*sync, again*) holds
  within a few percent per repetition.
- One replica per variant (`python -m mock_gateway`, every cap on and never refusing, a fresh ledger per run).
  *sync*: the channel answers 201, its bank at once (latency 0: the cheapest sync path); *sync, again* is the
  same once more, so its ratio is the method's own noise. *sync, bank latency*: the same with the default
  channels' simulated bank latency (lognormal, median 20 ms, p99 120 ms), as a sync channel is usually
  configured. *async acceptance*: the same channel with `settlement = "async"` and a bank quota of one payment
  per 1000 s, so the run measures the acceptance path alone (202, the payment and its reservation recorded,
  the backlog growing by every payment). *async with settlement*: no quota and no settlement delay, so every
  payment is also settled (a second ledger write) and that cost is in the figure too.
- CPU: each server process's user + system CPU time over its wrk run, divided by the requests its wrk
  completed. Sharing a core, each replica's absolute figure is higher than alone (cache and switches); the
  ratio is the figure to read.
- Machine: {os.cpu_count()} cores, shared with other work.

{table}

Where the replica's time goes: docs/gateway.md, "Performance".
"""
        )
        print(f"wrote {ASYNC_OUT.relative_to(REPO)}")
    return 0


def side_by_side(
    folder: Path,
    pair: list[tuple[str, dict[str, object]]],
    script: Path,
    args: argparse.Namespace,
    server_core: int | None,
    wrk_core: int | None,
) -> dict[str, tuple[float, float, int]]:
    """Two replicas loaded at the same time: variant → (µs CPU a request, req/s, non-2xx)."""
    import psutil

    servers: list[tuple[str, subprocess.Popen[str], str]] = []
    try:
        for name, extra in pair:
            run_dir = folder / name.replace(" ", "-").replace(",", "").replace("/", "-")
            run_dir.mkdir(parents=True)
            config = replica_config(run_dir, extra)
            command = [sys.executable, "-m", "mock_gateway", "--config", str(config), "--port", "0"]
            process, url = start([*pin(server_core), *command])
            servers.append((name, process, url))
            wait_ready(url, process)
        watched = [psutil.Process(process.pid) for _, process, _ in servers]
        before = [p.cpu_times() for p in watched]
        loads: list[tuple[float, int, int]] = [(0.0, 0, 0)] * len(servers)

        def load(index: int) -> None:
            loads[index] = run_wrk(servers[index][2], script, args.duration, args.connections // 2, wrk_core)

        threads = [threading.Thread(target=load, args=(i,)) for i in range(len(servers))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        after = [p.cpu_times() for p in watched]
    finally:
        for _, process, _ in servers:
            stop(process)
    measured = {}
    for (name, _, _), b, a, (rate, total, failed) in zip(servers, before, after, loads, strict=True):
        if total == 0:
            raise SystemExit(f"{name}: wrk completed no request")
        seconds = (a.user + a.system) - (b.user + b.system)
        measured[name] = (seconds / total * 1e6, rate, failed)
    return measured


def write_report(args: argparse.Namespace, placements: list[Placement]) -> None:
    import aiohttp

    sections = []
    for placement in placements:
        rows = "\n".join(
            f"| {i + 1} | {a:,.0f} | {c:,.0f} | {c / a:.2f} | {b:,.0f} | {b / a:.2f} | {note} |"
            for i, (a, c, b, note) in enumerate(
                zip(placement.bare, placement.floor, placement.replica, placement.notes, strict=True)
            )
        )
        sections.append(
            f"### {placement.name}\n\n"
            "| repetition | (a) bare req/s | (c) floor req/s | floor c/a | (b) replica req/s | ratio b/a "
            "| replica answers |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: | --- |\n"
            f"{rows}\n\n**{placement.summary()}**\n"
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        f"""# Gateway replica throughput

Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with

    .venv/bin/python scripts/bench_gateway.py --duration {args.duration} --repetitions {args.repetitions} \\
        --connections {args.connections}

- Load: wrk -t1 -c{args.connections} -d{args.duration}s, POST /v1/repayments, a unique Idempotency-Key per request,
  10,007 users and 30,011 cards.
- (a) a bare aiohttp handler returning a fixed 201 JSON (uvloop, no access log).
- (c) the *aiohttp floor*: the same app plus what any gateway endpoint must do before its own logic — a
  middleware that stamps one response header, and a handler that reads the request body and decodes its JSON.
  It shows how much of the budget aiohttp itself leaves for caps, idempotency and a durable ledger.
- (b) one replica, `python -m mock_gateway` (uvloop, standalone: the global, replica and per-user caps are all
  checked, with limits high enough never to refuse; bank latency 0; a fresh WAL ledger per repetition,
  `synchronous=NORMAL`, group commit: every 201 is committed before it is sent).
- Within each repetition the placements, and within each placement a then b, alternate, so drift on the
  machine hits both alike. "replica answers" checks the run: wrk's completed requests, how many were not 2xx,
  and the rows in the ledger (a few more than completed: requests in flight when wrk stopped still commit).
- Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, aiohttp
  {aiohttp.__version__}, SQLite {sqlite3.sqlite_version}. It is shared with other work, so absolute figures move
  between runs; the ratio, measured within the same minute, is the figure to read.

{chr(10).join(sections)}
Where the replica's time goes, and what was done about it: docs/gateway.md, "Performance".
"""
    )


if __name__ == "__main__":
    sys.exit(main())
