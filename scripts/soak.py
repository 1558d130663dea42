"""Soak: a long run at about 70 % of capacity, watching the memory of every gateway process.

Runs `surge run soak --duration S` as a subprocess and samples the RSS of the router and each replica (pids from
the run folder's cluster/cluster.json) every few seconds, and the ledger's size. Growth is measured after a
warm-up, because caches, connection pools and the allocator's arenas fill first. Target: < 10 % growth.

    python scripts/soak.py --duration 600 [--scale 1] [--warmup 60]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--warmup", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="surge-soak-")) / "run"
    command = [sys.executable, "-m", "loadtests.cli.main", "run", "soak", "--duration", str(args.duration),
               "--scale", str(args.scale), "--out", str(out)]  # fmt: skip
    print("running:", " ".join(command), flush=True)
    run = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    samples: dict[str, list[tuple[float, int]]] = {}
    ledger_sizes: list[tuple[float, int]] = []
    started = time.monotonic()
    try:
        while run.poll() is None:
            time.sleep(args.interval)
            state_file = out / "cluster" / "cluster.json"
            if not state_file.exists():
                continue
            state = json.loads(state_file.read_text())
            now = time.monotonic() - started
            processes = {"router": state["router"]["pid"]} | {r["name"]: r["pid"] for r in state["replicas"]}
            for name, pid in processes.items():
                try:
                    samples.setdefault(name, []).append((now, psutil.Process(pid).memory_info().rss))
                except psutil.Error:
                    continue
            ledger = Path(state["ledger_path"])
            size = sum(p.stat().st_size for p in ledger.parent.glob(ledger.name + "*") if p.exists())
            ledger_sizes.append((now, size))
    finally:
        if run.poll() is None:
            run.terminate()
            run.wait(timeout=60)
    print(f"\nsurge run exit code {run.returncode}; run folder {out}")
    worst = 0.0
    print(f"{'process':<10}{'RSS after warm-up':>20}{'RSS at end':>14}{'growth':>10}")
    for name, series in samples.items():
        after = [rss for t, rss in series if t >= args.warmup]
        if len(after) < 2:
            continue
        growth = (after[-1] - after[0]) / after[0]
        worst = max(worst, growth)
        print(f"{name:<10}{after[0] / 2**20:>17.1f} MiB{after[-1] / 2**20:>10.1f} MiB{growth:>9.1%}")
    if ledger_sizes:
        print(f"ledger: {ledger_sizes[0][1] / 2**20:.1f} MiB → {ledger_sizes[-1][1] / 2**20:.1f} MiB (WAL included)")
    verdict = "PASS" if worst < 0.10 else "FAIL"
    print(f"worst RSS growth after warm-up: {worst:.1%} (target < 10 %): {verdict}")
    return 0 if worst < 0.10 and run.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
