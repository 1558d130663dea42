"""Generator benchmark (issue 4): the arrivals/s one open-model worker process holds; writes docs/perf/generator.md.

    .venv/bin/python scripts/bench_generator.py [--windows 2] [--out docs/perf/generator.md]

Against a bare aiohttp handler (its own process, uvloop), in the same run:

1. Reference: plain closed-loop Locust — FastHttpUser, wait_time constant(0), 50 users, one process — its
   requests/s over 15 s, measured before and after the probes; the higher of the two is the reference.
2. surge's open model, one process, even arrivals at a rate R for `--windows` 10 s windows: R holds when the
   first attempts actually *sent* in every 10 s window are within ±2 % of R·10 (the issue's criterion).
   R starts at 30 % of the reference, grows by 25 % while it holds, then is bisected twice. The figure is the
   highest R that held, as a ratio to the reference (goal >= 0.5). Each probe also records the generator's
   own verdict (CPU, scheduling lag, late + dropped), reported next to it: the stricter "held and valid".
3. wrk at 50 constant connections against the same handler, for scale (a C generator's ceiling here).
4. Latency agreement: a handler that sleeps 5 ms; wrk with 2 connections, then surge at wrk's own rate;
   p50/p99 side by side (surge's service time and its time from the intended send).

Machines differ, so the ratios are the result; absolute rates are information only.

    .venv/bin/python scripts/bench_generator.py --profile-path 300 [--pairs 3] [--out docs/perf/generator-profile.md]

measures instead what a target profile (CONTRACT §7) costs the generator: the same open-model run at the same
rate against the same handler, once on the built-in path and once through examples/gateway/target.toml (the
§3 API written as a profile: templates rendered, rules matched, the payment id read by JSON pointer), in
alternating pairs. The figure is the Locust process's CPU seconds (user + system) per 1,000 arrivals; the
ratio profile / built-in is the result (goal <= 1.10).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
BODY = b'{"repayment_id":"rp_bench","status":"succeeded","replica":"b1","business_date":"2026-11-11"}'
PLAIN_LOCUSTFILE = """
from locust import FastHttpUser, constant, constant_throughput, task

BODY = '{"user_id": "u000001", "card_id": "u000001-c1", "channel": "ICBC", "amount_fen": 12345}'
HEADERS = {"Idempotency-Key": "k", "Content-Type": "application/json"}


class Plain(FastHttpUser):
    wait_time = WAIT

    @task
    def pay(self):
        self.client.post("/v1/repayments", data=BODY, headers=HEADERS)
"""  # plain Locust, no surge code: WAIT is constant(0) for the closed loop, constant_throughput(r) when paced
PACED_PER_USER = 20  # requests/s each paced user aims at
WRK_LUA = """
wrk.method = "POST"
wrk.body = '{"user_id": "u000001", "card_id": "u000001-c1", "channel": "ICBC", "amount_fen": 12345}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Idempotency-Key"] = "k"
"""
SCENARIO = """
name = "bench"
duration_s = {duration}
seed = 1
[population]
users = 20000
bill_fen = {{ median = 100000, p99 = 2000000 }}
[[rate]]
at_s = 0
per_s = {rate}
[client]
timeout_s = 2.0
max_retries = 0
[arrivals]
process = "even"
pool = {pool}
"""
LEAD_S = 3.0
READING = [
    "Reading it: *held* is the issue's criterion (the right number of requests in every 10 s window); *valid*",
    "adds that each request went out on time (within 50 ms of its intended send). Past the valid rates the",
    "process still sends the right count, but its CPU (60-90 % of one core) competes with the handler and the",
    "other jobs on two cores, so wake-ups come late; the closed loop has no schedule to miss and simply runs",
    "slower.",
]


def serve(delay_ms: float) -> None:
    """The bare handler: what a gateway costs when it does nothing. It binds port 0 itself and prints the port
    it got (a port picked free by the parent and bound later here could be taken in between)."""
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        return web.Response(status=201, body=BODY, content_type="application/json")

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    app = web.Application()
    app.router.add_post("/v1/repayments", handle)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)  # connections queue from now on, so the parent may connect as soon as it reads the port
    print(sock.getsockname()[1], flush=True)
    web.run_app(app, sock=sock, print=None, access_log=None)


@contextmanager
def server(delay_ms: float = 0.0) -> Iterator[str]:
    command = [sys.executable, __file__, "--serve", "--delay-ms", str(delay_ms)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())  # the handler's own bound port; "" (exit) fails here
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def run(command: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """A child in its own session, killed with its group past the timeout (Locust may fork)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                               start_new_session=True)  # fmt: skip
    try:
        out, _ = process.communicate(timeout=timeout_s)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return subprocess.CompletedProcess(command, process.returncode, out, "")


def closed_loop(url: str, work: Path) -> float:
    locustfile = work / "closed.py"
    locustfile.write_text(PLAIN_LOCUSTFILE.replace("WAIT", "constant(0)"), encoding="utf-8")
    prefix = work / "closed"
    command = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--host", url, "-u", "50",
               "-r", "50", "-t", "15s", "--csv", str(prefix), "--only-summary", "--loglevel", "ERROR"]  # fmt: skip
    run(command, 60)
    with (work / "closed_stats.csv").open(newline="") as handle:
        row = next(r for r in csv.DictReader(handle) if r["Name"] == "Aggregated")
    return float(row["Requests/s"])


def paced_loop(url: str, rate: float, work: Path) -> float:
    """Plain Locust paced to `rate` (FastHttpUser, constant_throughput, no surge code): its achieved req/s."""
    users = max(1, round(rate / PACED_PER_USER))
    locustfile = work / "paced.py"
    locustfile.write_text(PLAIN_LOCUSTFILE.replace("WAIT", f"constant_throughput({rate / users})"), encoding="utf-8")
    prefix = work / "paced"
    command = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--host", url,
               "-u", str(users), "-r", str(users), "-t", "20s", "--csv", str(prefix), "--only-summary",
               "--loglevel", "ERROR"]  # fmt: skip
    run(command, 60)
    with (work / "paced_stats.csv").open(newline="") as handle:
        row = next(r for r in csv.DictReader(handle) if r["Name"] == "Aggregated")
    return float(row["Requests/s"])


def paced_search(url: str, reference: float, work: Path) -> tuple[float, list[tuple[float, float]]]:
    """The highest rate plain paced Locust reaches within 2 % (whole run), +10 % steps from half the reference:
    what pacing alone costs a Locust process, before any of surge's work."""
    probes: list[tuple[float, float]] = []
    rate, held = 0.5 * reference, 0.0
    while rate < 1.5 * reference:
        achieved = paced_loop(url, round(rate), work)
        probes.append((round(rate), achieved))
        print(f"  paced plain Locust {rate:.0f}/s: achieved {achieved:.0f}/s", flush=True)
        if achieved < 0.98 * round(rate):
            break
        held = round(rate)
        rate *= 1.1
    return held, probes


@dataclass
class Probe:
    rate: float
    held: bool
    worst_error_pct: float
    valid: bool
    reasons: list[str]
    cpu_pct_max: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    intended_p50_ms: float = 0.0
    intended_p99_ms: float = 0.0
    cpu_s: float = 0.0  # the Locust process's CPU time, user + system
    arrivals: int = 0

    @property
    def cpu_ms_per_arrival(self) -> float:
        return 1000.0 * self.cpu_s / max(1, self.arrivals)


def open_model(url: str, rate: float, windows: int, work: Path, *extra: str) -> Probe:
    out = Path(tempfile.mkdtemp(dir=work, prefix=f"open-{rate:.0f}-"))
    scenario = out / "bench.toml"
    pool = max(100, min(2000, int(rate * 0.25)))  # 250 ms of arrivals in flight: a service hiccup is absorbed
    scenario.write_text(SCENARIO.format(duration=10 * windows, rate=rate, pool=pool), encoding="utf-8")
    t0 = time.time() + LEAD_S
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url,
               "--scenario", str(scenario), "--surge-out", str(out), "--surge-start-unix", repr(t0),
               "--only-summary", "--loglevel", "ERROR", *extra]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run(command, 10 * windows + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    sent: list[float] = []
    for path in (out / "history").glob("*.csv"):
        with path.open(newline="") as handle:
            sent += [float(r["sent"]) - t0 for r in csv.DictReader(handle) if r["attempt"] == "1"]
    errors = []
    for k in range(windows):
        count = sum(1 for s in sent if 10 * k <= s < 10 * (k + 1))
        errors.append(100.0 * (count - rate * 10) / (rate * 10))
    verdict = json.loads((out / "generator.json").read_text()) if (out / "generator.json").exists() else {}
    worst = max(errors, key=abs) if errors else -100.0
    reasons = list(verdict.get("reasons", ["no generator.json"]))
    cpu = float(verdict.get("cpu_pct_max", 0))
    probe = Probe(rate, abs(worst) <= 2.0, worst, bool(verdict.get("valid")), reasons, cpu, cpu_s=cpu_s,
                  arrivals=len(sent))  # fmt: skip
    probe.p50_ms, probe.p99_ms, probe.intended_p50_ms, probe.intended_p99_ms = latencies(out)
    shutil.rmtree(out / "history", ignore_errors=True)
    return probe


def latencies(out: Path) -> tuple[float, float, float, float]:
    """p50/p99 of service time and of time from the intended send, over the whole run, in ms."""
    from hdrh.histogram import HdrHistogram

    service, intended = HdrHistogram(1, 3_600_000_000, 3), HdrHistogram(1, 3_600_000_000, 3)
    path = out / "windows.jsonl"
    if not path.exists():
        return 0.0, 0.0, 0.0, 0.0
    for line in path.read_text().splitlines():
        stats = json.loads(line)["classes"].get("succeeded")
        if stats:
            service.add(HdrHistogram.decode(stats["service"].encode()))
            intended.add(HdrHistogram.decode(stats["intended"].encode()))
    ms = [h.get_value_at_percentile(p) / 1000 for h in (service, intended) for p in (50, 99)]
    return ms[0], ms[1], ms[2], ms[3]


def wrk(url: str, connections: int, work: Path) -> dict[str, float]:
    script = work / "post.lua"
    script.write_text(WRK_LUA, encoding="utf-8")
    result = run(
        ["wrk", "-t1", f"-c{connections}", "-d10s", "--latency", "-s", str(script), f"{url}/v1/repayments"], 40
    )
    text = result.stdout
    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        found = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)", text, re.MULTILINE)
        if found:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]
            figures[f"p{pct}_ms"] = float(found.group(1)) * scale
    return figures


def search(url: str, reference: float, windows: int, work: Path) -> tuple[float, list[Probe]]:
    probes: list[Probe] = []
    rate, held = 0.3 * reference, 0.0
    failed = float("inf")
    while rate < 2 * reference:
        probe = open_model(url, round(rate), windows, work)
        probes.append(probe)
        print(f"  open model {probe.rate:.0f}/s: worst window {probe.worst_error_pct:+.2f} %, valid {probe.valid}",
              flush=True)  # fmt: skip
        if not probe.held:
            failed = probe.rate
            break
        held = probe.rate
        rate *= 1.25
    for _ in range(2):
        if failed == float("inf"):
            break
        middle = round((held + failed) / 2)
        probe = open_model(url, middle, windows, work)
        probes.append(probe)
        print(f"  open model {probe.rate:.0f}/s: worst window {probe.worst_error_pct:+.2f} %, valid {probe.valid}",
              flush=True)  # fmt: skip
        if probe.held:
            held = middle
        else:
            failed = middle
    rate = min([p.rate for p in probes] + [held or 0.3 * reference])
    for _ in range(4):  # the highest rate that is also valid may lie below every probe so far
        if any(p.held and p.valid for p in probes):
            break
        rate = round(rate * 0.8)
        probe = open_model(url, rate, windows, work)
        probes.append(probe)
        print(f"  open model {probe.rate:.0f}/s: worst window {probe.worst_error_pct:+.2f} %, valid {probe.valid}",
              flush=True)  # fmt: skip
    return held, probes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--delay-ms", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--windows", type=int, default=2, help="10 s windows per open-model probe (default 2)")
    parser.add_argument("--out", type=Path, help="default docs/perf/generator.md (generator-profile.md)")
    parser.add_argument("--profile-path", type=float, metavar="RATE", help="compare the profile path at RATE/s")
    parser.add_argument("--pairs", type=int, default=3, help="built-in/profile pairs for --profile-path")
    args = parser.parse_args()
    if args.serve:
        serve(args.delay_ms)
        return 0
    if args.profile_path:
        out = args.out or ROOT / "docs" / "perf" / "generator-profile.md"
        return profile_path(args.profile_path, args.pairs, args.windows, out)
    args.out = args.out or ROOT / "docs" / "perf" / "generator.md"
    if shutil.which("wrk") is None:
        print("wrk is missing (apt-get install wrk)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="surge-bench-") as tmp:
        work = Path(tmp)
        with server() as url:
            before = closed_loop(url, work)
            print(f"closed-loop FastHttpUser: {before:.0f} req/s", flush=True)
            held, probes = search(url, before, args.windows, work)
            after = closed_loop(url, work)  # the load drifts: the better of the two is the reference
            print(f"closed-loop FastHttpUser again: {after:.0f} req/s", flush=True)
            paced, paced_probes = paced_search(url, max(before, after), work)
            wrk_bare = wrk(url, 50, work)
            print(f"wrk -c50: {wrk_bare['rps']:.0f} req/s", flush=True)
        with server(delay_ms=5.0) as url:
            wrk_slow = wrk(url, 2, work)
            agreement = open_model(url, round(wrk_slow["rps"]), 1, work)
    write_report(args.out, (before, after), held, probes, (paced, paced_probes), wrk_bare, wrk_slow, agreement,
                 args.windows)  # fmt: skip
    print(f"held {held:.0f}/s = {held / max(before, after):.2f} x closed loop; written to {args.out}")
    return 0


def profile_path(rate: float, pairs: int, windows: int, out: Path) -> int:
    """Built-in and profile runs at the same rate, alternating so that drifting load hits both alike."""
    profile = ROOT / "examples" / "gateway" / "target.toml"
    builtin: list[Probe] = []
    targeted: list[Probe] = []
    with tempfile.TemporaryDirectory(prefix="surge-bench-") as tmp, server() as url:
        work = Path(tmp)
        for pair in range(pairs):
            for probes, extra in ((builtin, ()), (targeted, ("--target", str(profile)))):
                probe = open_model(url, rate, windows, work, *extra)
                probes.append(probe)
                name = "profile" if extra else "built-in"
                print(f"  pair {pair + 1} {name}: {probe.cpu_ms_per_arrival:.3f} CPU ms/arrival, worst window "
                      f"{probe.worst_error_pct:+.2f} %, valid {probe.valid}", flush=True)  # fmt: skip
    base = statistics.median(p.cpu_ms_per_arrival for p in builtin)
    mine = statistics.median(p.cpu_ms_per_arrival for p in targeted)
    ratio = mine / base
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    lines = [
        "## The target-profile path (issue 14)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} shared cores (load "
        f"average at the end: {load}) with",
        f"`scripts/bench_generator.py --profile-path {rate:g} --pairs {pairs} --windows {windows}`:",
        f"one open-model Locust process at {rate:g} arrivals/s for {10 * windows} s against the bare aiohttp",
        "handler, on the built-in path and through `examples/gateway/target.toml` (the same API as a profile),",
        "alternating. Cost is the Locust process's CPU time (user + system) per arrival, median of the runs.",
        "",
        "| path | CPU ms per arrival (median) | runs (ms/arrival; worst 10 s window; valid) |",
        "| --- | --- | --- |",
        f"| built-in | {base:.3f} | "
        + "; ".join(f"{p.cpu_ms_per_arrival:.3f}, {p.worst_error_pct:+.1f} %, {p.valid}" for p in builtin)
        + " |",
        f"| target profile | {mine:.3f} | "
        + "; ".join(f"{p.cpu_ms_per_arrival:.3f}, {p.worst_error_pct:+.1f} %, {p.valid}" for p in targeted)
        + " |",
        "",
        f"**Ratio profile / built-in: {ratio:.3f}** (goal <= 1.10).",
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")
    print(f"profile / built-in CPU per arrival: {ratio:.3f}; written to {out}")
    return 0 if ratio <= 1.10 else 1


def write_report(
    out: Path,
    references: tuple[float, float],
    held: float,
    probes: list[Probe],
    paced: tuple[float, list[tuple[float, float]]],
    wrk_bare: dict[str, float],
    wrk_slow: dict[str, float],
    agreement: Probe,
    windows: int,
) -> None:
    reference = max(references)
    held_valid = max((p.rate for p in probes if p.held and p.valid), default=0.0)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    lines = [
        "## Load generator (issue 4)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores; load average "
        f"(1, 5, 15 min) at the end: {load} — the cores are shared with other jobs, which costs the open model",
        "(it must act on time) more than the closed loop (which just runs slower).",
        "",
        "`scripts/bench_generator.py`: one open-model worker process (loadtests/locustfile.py, even arrivals,",
        f"{windows} windows of 10 s) against a bare aiohttp handler in its own process, compared with plain",
        "closed-loop Locust (FastHttpUser, wait_time constant(0), 50 users, one process) against the same handler in",
        "the same run. A rate *holds* when the first attempts actually sent in every 10 s window are within ±2 % of",
        "the target. *Valid* is the generator's own verdict on the same probe (CPU >= 90 % for 3 s, scheduling lag",
        "p99 > 50 ms, or late + dropped > 1 % of arrivals make it invalid).",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| highest open-model rate held, one process | {held:.0f} arrivals/s |",
        f"| closed-loop FastHttpUser, one process (reference: the better of {references[0]:.0f} before and "
        f"{references[1]:.0f} after the probes) | {reference:.0f} req/s |",
        f"| **ratio (goal >= 0.5)** | **{held / reference:.2f}** |",
        f"| highest rate that held *and* was valid | {held_valid:.0f} arrivals/s ({held_valid / reference:.2f}) |",
        f"| plain Locust paced with constant_throughput (no surge code), highest rate within 2 % | {paced[0]:.0f} "
        f"req/s ({paced[0] / reference:.2f}) |",
        f"| wrk, 1 thread, 50 connections (a C generator, for scale) | {wrk_bare['rps']:.0f} req/s |",
        "",
        *READING,
        "",
        "Probes (rate → worst 10 s window, generator verdict):",
        "",
        "| rate /s | worst window | held | valid | generator CPU max | service p50 / p99 ms | reasons |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for probe in probes:
        lines.append(
            f"| {probe.rate:.0f} | {probe.worst_error_pct:+.2f} % | {probe.held} | {probe.valid} | "
            f"{probe.cpu_pct_max:.0f} % | {probe.p50_ms:.2f} / {probe.p99_ms:.2f} | {'; '.join(probe.reasons)} |"
        )
    lines += [
        "",
        "Plain paced Locust (the floor any open model built on Locust starts from): "
        + ", ".join(f"{target:.0f}/s → {achieved:.0f}/s" for target, achieved in paced[1])
        + ".",
        "",
        f"Latency agreement against a handler that sleeps 5 ms, at wrk's own rate with 2 connections "
        f"({wrk_slow['rps']:.0f}/s):",
        "",
        "| | p50 ms | p99 ms |",
        "| --- | --- | --- |",
        f"| wrk -c2 | {wrk_slow.get('p50_ms', 0):.2f} | {wrk_slow.get('p99_ms', 0):.2f} |",
        f"| surge service time (sent → done) | {agreement.p50_ms:.2f} | {agreement.p99_ms:.2f} |",
        f"| surge from intended send | {agreement.intended_p50_ms:.2f} | {agreement.intended_p99_ms:.2f} |",
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
