"""Benchmark of the report build on a synthetic one-hour soak (targets: <= 10 s, report.html <= 5 MB).

Writes a run folder of 3,600 windows and about a million history lines (~280 attempts/s, mostly successes, with
declines, 429s, shedding and timeouts, a ledger that agrees with the history, a fault every ten minutes), then
times `finalize_run` on it — the same call `surge run` makes — and prints the time of each stage, the time of
the whole build and the size of every file written.

    python scripts/bench_report.py [--keep DIR] [--seconds 3600] [--rate 280]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from reports import analysis, frames, hdr
from reports.finalize import finalize_run
from reports.render.page import render_report
from reports.render.shared import plotly_bundle
from runfolder.events import RunEvent, write_events_csv
from runfolder.layout import write_json
from runfolder.models import GeneratorVerdict, Phase, RunMeta, Slo

STARTED_UNIX = 1_794_358_800.0  # 2026-11-11T00:00:00+08:00
CLOCK_START = "2026-11-11T00:00:00+08:00"
CHANNELS = ("ICBC", "CMB", "ABC")
CLASS_SHARE = {
    "succeeded": 0.90,
    "declined": 0.05,
    "rate_limited": 0.03,
    "shed": 0.01,
    "error": 0.005,
    "timeout": 0.005,
}
STATUS = {"succeeded": 201, "declined": 422, "rate_limited": 429, "shed": 503, "error": 500, "timeout": 0}
CODE = {
    "succeeded": "",
    "declined": "DAILY_LIMIT_EXCEEDED",
    "rate_limited": "RATE_LIMITED",
    "shed": "CHANNEL_BUSY",
    "error": "INTERNAL",
    "timeout": "TIMEOUT",
}
TARGETS = {"seconds": 10.0, "bytes": 5 * 1024 * 1024}


def history_frame(seconds: int, rate: float, rng: np.random.Generator) -> pd.DataFrame:
    """One row per attempt, vectorised: a million rows in about a second."""
    per_second = rng.poisson(rate, seconds)
    n = int(per_second.sum())
    intended = np.repeat(np.arange(seconds), per_second) + rng.random(n)
    classes = np.array(list(CLASS_SHARE))
    outcome = rng.choice(classes, size=n, p=list(CLASS_SHARE.values()))
    service = rng.lognormal(np.log(0.025), 0.5, n)
    service[outcome == "timeout"] = 2.0
    sent = intended + rng.uniform(0.0002, 0.002, n)
    done = np.minimum(sent + service, seconds - 0.001)
    users = rng.integers(0, 50_000, n)
    ok = outcome == "succeeded"
    return pd.DataFrame(
        {
            "payment_id": [f"p{i}" for i in range(n)],
            "key": [f"k{i}" for i in range(n)],
            "attempt": 1,
            "user_id": [f"u{u}" for u in users],
            "card_id": [f"c{u}-{c}" for u, c in zip(users, rng.integers(0, 2, n), strict=True)],
            "channel": rng.choice(np.array(CHANNELS), n),
            "amount_fen": np.minimum(rng.lognormal(np.log(20_000), 0.8, n).astype(np.int64), 1_000_000),
            "intended": np.round(STARTED_UNIX + intended, 6),
            "sent": np.round(STARTED_UNIX + sent, 6),
            "done": np.round(STARTED_UNIX + done, 6),
            "status": pd.Series(outcome).map(STATUS).to_numpy(),
            "code": pd.Series(outcome).map(CODE).to_numpy(),
            "outcome": outcome,
            "repayment_id": np.where(ok, np.char.add("rp", np.arange(n).astype(str)), ""),
            "replica": np.where(outcome == "timeout", "", rng.choice(np.array(["r1", "r2", "r3"]), n)),
            "business_date": np.where(ok, "2026-11-11", ""),
            "replayed": "false",
            "part": 0,
        }
    )


def _encode(index: np.ndarray, counts: np.ndarray) -> str:
    """An encoded histogram straight from bucket counts (no per-value recording: an hour has 2 million values)."""
    hist = hdr.new_histogram()
    np.frombuffer(hist.counts, dtype=np.uint64)[index] = counts
    hist.set_internal_tacking_values(int(index[0]), int(index[-1]), int(counts.sum()))
    return str(hist.encode().decode("ascii"))


def windows_lines(history: pd.DataFrame, seconds: int) -> list[str]:
    """One window per second from the history, every per-second aggregate computed with numpy."""
    table = hdr.bucket_table().highest_us
    classes = list(CLASS_SHARE)
    done_s = (history["done"] - STARTED_UNIX).astype(int).clip(upper=seconds - 1).to_numpy()
    offered = np.bincount((history["intended"] - STARTED_UNIX).astype(int).clip(upper=seconds - 1), minlength=seconds)
    cls = pd.Categorical(history["outcome"], categories=classes).codes.astype(np.int64)
    amount = np.bincount(
        done_s, weights=np.where(history["status"] == 201, history["amount_fen"], 0), minlength=seconds
    )
    windows: list[dict[str, Any]] = [
        {
            "t": t,
            "offered": int(offered[t]),
            "sent": int(offered[t]),
            "late": 0,
            "dropped": 0,
            "classes": {},
            "codes": {},
            "replicas": {},
            "amount_fen": int(amount[t]),
            "plans_followed": 0,
            "gen": {"cpu_pct": 30.0, "lag_ms": 1.0, "workers": 2},
        }
        for t in range(seconds)
    ]
    for name, values in (("codes", history["code"]), ("replicas", history["replica"])):
        labels = pd.Categorical(values)
        pairs, n_pairs = np.unique(done_s * len(labels.categories) + labels.codes, return_counts=True)
        for pair, n in zip(pairs, n_pairs, strict=True):
            t, label = divmod(int(pair), len(labels.categories))
            if labels.categories[label]:
                windows[t][name][str(labels.categories[label])] = int(n)
    for kind, start in (("intended", history["intended"]), ("service", history["sent"])):
        micros = ((history["done"] - start) * 1e6).astype(np.int64).clip(lower=1).to_numpy()
        bucket = np.searchsorted(table, micros)
        key = (done_s * len(classes) + cls) * table.size + bucket
        unique, counts = np.unique(key, return_counts=True)
        group = unique // table.size
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
        for begin, end in zip(starts, np.r_[starts[1:], unique.size], strict=True):
            t, c = divmod(int(group[begin]), len(classes))
            entry = windows[t]["classes"].setdefault(classes[c], {"count": int(counts[begin:end].sum())})
            entry[kind] = _encode(unique[begin:end] % table.size, counts[begin:end])
    return [json.dumps(window, separators=(",", ":")) for window in windows]


def write_soak(out: Path, seconds: int, rate: float) -> int:
    rng = np.random.default_rng(42)
    history = history_frame(seconds, rate, rng)
    (out / "history").mkdir(parents=True, exist_ok=True)
    half = len(history) // 2
    table = pa.Table.from_pandas(history, preserve_index=False)
    pacsv.write_csv(table.slice(0, half), out / "history" / "w1.csv")
    pacsv.write_csv(table.slice(half), out / "history" / "w2.csv")
    (out / "windows.jsonl").write_text("\n".join(windows_lines(history, seconds)) + "\n", encoding="utf-8")
    faults: list[dict[str, Any]] = [
        {"at_s": at, "action": "kill", "target": "primary", "duration_s": 10} for at in range(600, seconds, 600)
    ]
    meta = RunMeta(
        scenario="soak-bench",
        description="synthetic one-hour soak for scripts/bench_report.py",
        seed=42,
        scale=1.0,
        duration_s=seconds,
        started_unix=STARTED_UNIX,
        host="http://127.0.0.1:8080",
        embedded=True,
        workers=2,
        versions={"surge": "bench"},
        git_commit="bench",
        gateway_config={
            "clock": {"speed": 1.0, "start": CLOCK_START, "anchor_unix": STARTED_UNIX},
            "limits": {"user_daily_fen": 20_000_000},
            "channels": [{"code": code, "card_daily_fen": 5_000_000, "single_fen": 5_000_000} for code in CHANNELS],
        },
        slo=Slo(min_success_ratio=0.95, max_p99_ms=800, max_recovery_s=5),
        phases=[Phase(name="soak", start_s=0, end_s=seconds)],
        faults=faults,
    )
    write_json(out / "meta.json", meta)
    write_json(out / "generator.json", GeneratorVerdict())
    fault_events = [
        RunEvent(STARTED_UNIX + f["at_s"] + 0.01, "chaos", "fault_injected", "primary", "kill") for f in faults
    ]
    write_events_csv(out / "events.csv", STARTED_UNIX, fault_events)
    ledger = history[history["status"] == 201]
    columns = ["repayment_id", "key", "user_id", "card_id", "channel", "amount_fen", "business_date", "replica"]
    rows = zip(*(ledger[name].tolist() for name in columns), strict=True)
    with sqlite3.connect(out / "ledger.sqlite") as conn:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute(
            "CREATE TABLE repayments (repayment_id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, "
            "user_id TEXT NOT NULL, card_id TEXT NOT NULL, channel TEXT NOT NULL, amount_fen INTEGER NOT NULL, "
            "business_date TEXT NOT NULL, replica TEXT NOT NULL, created_at TEXT NOT NULL)"
        )
        conn.executemany("INSERT INTO repayments VALUES (?, ?, ?, ?, ?, ?, ?, ?, '2026-11-11T00:00:00+08:00')", rows)
    conn.close()
    return len(history)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="write the soak here and keep it (default: a temp dir)")
    parser.add_argument("--seconds", type=int, default=3600)
    parser.add_argument("--rate", type=float, default=280.0, help="attempts per second")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="surge-bench-") as scratch:
        out = args.keep or Path(scratch) / "soak"
        began = time.perf_counter()
        attempts = write_soak(out, args.seconds, args.rate)
        print(
            f"synthetic soak: {args.seconds} windows, {attempts:,} history lines "
            f"(generated in {time.perf_counter() - began:.1f} s)"
        )
        plotly_bundle.cache_clear()
        load_before = os.getloadavg()[0]
        began, cpu_began = time.perf_counter(), time.process_time()
        summary = finalize_run(out)
        build, cpu = time.perf_counter() - began, time.process_time() - cpu_began
        stages = _stages(out)
        report = (out / "report.html").stat().st_size
        for name, seconds in stages.items():
            print(f"  {name:<8} {seconds:6.2f} s")
        print(
            f"build: {build:.2f} s wall, {cpu:.2f} s CPU (target <= {TARGETS['seconds']:.0f} s); "
            f"load average {load_before:.1f} on {os.cpu_count()} cores"
        )
        for name in ("report.html", "summary.json", "junit.xml", "timeseries.csv"):
            print(f"  {name:<15} {(out / name).stat().st_size / 1024 / 1024:6.2f} MB")
        print(f"report.html: {report / 1024 / 1024:.2f} MB (target <= 5 MB); exit code {summary['exit_code']}")
        ok = build <= TARGETS["seconds"] and report <= TARGETS["bytes"]
    return 0 if ok else 1


def _stages(out: Path) -> dict[str, float]:
    """The same build again, stage by stage (plotly.js is compressed once per process: the bundle stage)."""
    plotly_bundle.cache_clear()
    times: dict[str, float] = {}

    def timed(name: str, step: Callable[[], Any]) -> Any:
        began = time.perf_counter()
        result = step()
        times[name] = time.perf_counter() - began
        return result

    timed("windows", lambda: frames.read_windows(out / "windows.jsonl"))
    timed("history", lambda: frames.read_history(out / "history"))
    timed("ledger", lambda: frames.read_ledger(out / "ledger.sqlite"))
    loaded = frames.load_run(out)
    result = timed("analyse", lambda: analysis.analyse(loaded))
    timed("bundle", plotly_bundle)
    timed("render", lambda: render_report(result))
    return times


if __name__ == "__main__":
    sys.exit(main())
