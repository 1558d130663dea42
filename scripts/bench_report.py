"""Benchmark of the report build on a synthetic one-hour soak (issue 6 targets: <= 10 s, report.html <= 5 MB).

Writes a run folder of 3,600 windows and about a million history lines (~280 attempts/s, mostly successes, with
declines, 429s, shedding and timeouts, a ledger that agrees with the history, a fault every ten minutes), then
times `finalize_run` on it — the same call `surge run` makes — and prints the time of each stage, the time of
the whole build and the size of every file written.

    python scripts/bench_report.py [--keep DIR] [--seconds 3600] [--rate 280]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from reports import analysis, hdr, render
from reports.finalize import finalize_run
from reports.frames import load_run

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
    frame = pd.DataFrame(
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
    return frame


def windows_lines(history: pd.DataFrame, seconds: int) -> list[str]:
    """One window per second from the history; histograms built per bucket, not per value."""
    table = hdr.bucket_table().highest_us
    intended_s = (history["intended"] - STARTED_UNIX).astype(int).clip(upper=seconds - 1)
    done_s = (history["done"] - STARTED_UNIX).astype(int).clip(upper=seconds - 1)
    lat_intended = ((history["done"] - history["intended"]) * 1e6).astype(np.int64).clip(lower=1)
    lat_service = ((history["done"] - history["sent"]) * 1e6).astype(np.int64).clip(lower=1)
    offered = np.bincount(intended_s, minlength=seconds)
    frame = pd.DataFrame(
        {
            "t": done_s,
            "cls": history["outcome"],
            "code": history["code"],
            "replica": history["replica"],
            "amount": np.where(history["status"] == 201, history["amount_fen"], 0),
            "bi": np.searchsorted(table, lat_intended),
            "bs": np.searchsorted(table, lat_service),
        }
    )
    lines = []
    for t, group in frame.groupby("t", sort=True):
        classes = {}
        for cls, rows in group.groupby("cls"):
            entry: dict[str, object] = {"count": len(rows)}
            for kind, column in (("intended", "bi"), ("service", "bs")):
                hist = hdr.new_histogram()
                buckets, counts = np.unique(rows[column].to_numpy(), return_counts=True)
                for bucket, count in zip(buckets, counts, strict=True):
                    hist.record_value(int(table[bucket]), int(count))
                entry[kind] = hist.encode().decode("ascii")
            classes[str(cls)] = entry
        codes = group.loc[group["code"] != "", "code"].value_counts().to_dict()
        replicas = group.loc[group["replica"] != "", "replica"].value_counts().to_dict()
        window = {
            "t": int(t),
            "offered": int(offered[int(t)]),
            "sent": int(offered[int(t)]),
            "late": 0,
            "dropped": 0,
            "classes": classes,
            "codes": {str(k): int(v) for k, v in codes.items()},
            "replicas": {str(k): int(v) for k, v in replicas.items()},
            "amount_fen": int(group["amount"].sum()),
            "plans_followed": 0,
            "gen": {"cpu_pct": 30.0, "lag_ms": 1.0, "workers": 2},
        }
        lines.append(json.dumps(window, separators=(",", ":")))
    return lines


def write_soak(out: Path, seconds: int, rate: float) -> int:
    rng = np.random.default_rng(42)
    history = history_frame(seconds, rate, rng)
    (out / "history").mkdir(parents=True, exist_ok=True)
    half = len(history) // 2
    history.iloc[:half].to_csv(out / "history" / "w1.csv", index=False)
    history.iloc[half:].to_csv(out / "history" / "w2.csv", index=False)
    (out / "windows.jsonl").write_text("\n".join(windows_lines(history, seconds)) + "\n", encoding="utf-8")
    faults = [{"at_s": at, "action": "kill", "target": "primary", "duration_s": 10} for at in range(600, seconds, 600)]
    meta = {
        "scenario": "soak-bench",
        "description": "synthetic one-hour soak for scripts/bench_report.py",
        "seed": 42,
        "scale": 1.0,
        "duration_s": seconds,
        "started_unix": STARTED_UNIX,
        "host": "http://127.0.0.1:8080",
        "embedded": True,
        "workers": 2,
        "versions": {"surge": "bench"},
        "git_commit": "bench",
        "gateway_config": {
            "clock": {"speed": 1.0, "start": CLOCK_START, "anchor_unix": STARTED_UNIX},
            "limits": {"user_daily_fen": 20_000_000},
            "channels": [{"code": code, "card_daily_fen": 5_000_000, "single_fen": 5_000_000} for code in CHANNELS],
        },
        "slo": {"min_success_ratio": 0.95, "max_p99_ms": 800, "max_recovery_s": 5},
        "phases": [{"name": "soak", "start_s": 0, "end_s": seconds}],
        "spikes": [],
        "faults": faults,
    }
    (out / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    (out / "generator.json").write_text(json.dumps({"valid": True, "reasons": []}), encoding="utf-8")
    events = pd.DataFrame(
        [(f["at_s"] + 0.01, STARTED_UNIX + f["at_s"], "chaos", "fault_injected", "primary", "kill") for f in faults],
        columns=["t_s", "unix", "source", "kind", "target", "detail"],
    )
    events.to_csv(out / "events.csv", index=False)
    ledger = history[history["status"] == 201]
    with sqlite3.connect(out / "ledger.sqlite") as conn:
        conn.execute(
            "CREATE TABLE repayments (repayment_id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, "
            "user_id TEXT NOT NULL, card_id TEXT NOT NULL, channel TEXT NOT NULL, amount_fen INTEGER NOT NULL, "
            "business_date TEXT NOT NULL, replica TEXT NOT NULL, created_at TEXT NOT NULL)"
        )
        conn.executemany(
            "INSERT INTO repayments VALUES (?, ?, ?, ?, ?, ?, ?, ?, '2026-11-11T00:00:00+08:00')",
            ledger[
                ["repayment_id", "key", "user_id", "card_id", "channel", "amount_fen", "business_date", "replica"]
            ].itertuples(index=False, name=None),
        )
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
        render.plotly_bundle.cache_clear()
        began = time.perf_counter()
        summary = finalize_run(out)
        build = time.perf_counter() - began
        stages = _stages(out)
        report = (out / "report.html").stat().st_size
        for name, seconds in stages.items():
            print(f"  {name:<8} {seconds:6.2f} s")
        print(f"build: {build:.2f} s (target <= {TARGETS['seconds']:.0f} s)")
        for name in ("report.html", "summary.json", "junit.xml", "timeseries.csv"):
            print(f"  {name:<15} {(out / name).stat().st_size / 1024 / 1024:6.2f} MB")
        print(f"report.html: {report / 1024 / 1024:.2f} MB (target <= 5 MB); exit code {summary['exit_code']}")
        ok = build <= TARGETS["seconds"] and report <= TARGETS["bytes"]
    return 0 if ok else 1


def _stages(out: Path) -> dict[str, float]:
    """The same build again, stage by stage (plotly.js is compressed once per process: the bundle stage)."""
    render.plotly_bundle.cache_clear()
    times = {}
    began = time.perf_counter()
    frames = load_run(out)
    times["load"] = time.perf_counter() - began
    began = time.perf_counter()
    result = analysis.analyse(frames)
    times["analyse"] = time.perf_counter() - began
    began = time.perf_counter()
    render.plotly_bundle()
    times["bundle"] = time.perf_counter() - began
    began = time.perf_counter()
    render.render_report(result)
    times["render"] = time.perf_counter() - began
    return times


if __name__ == "__main__":
    sys.exit(main())
