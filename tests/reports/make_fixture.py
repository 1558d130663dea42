"""Writes tests/fixtures/run_small: a synthetic but self-consistent 30-second run folder (internals §5).

Until a real recording replaces it, this stands in for `surge run`: a tiny simulation of clients and an
active-standby cluster with a midnight crossing (daily caps reset), a 5x spike against a global cap of 80/s
(429s, retried with the same key), the primary killed at 18 s (connection errors, then failover to r2), two
timed-out attempts (one recorded by the gateway, one not; both retried with the same key), and limit declines
whose suggested plans the clients follow. Ledger and history agree, so every invariant holds.

    python tests/reports/make_fixture.py [OUT_DIR]
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import random
import shutil
import sqlite3
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hdrh.histogram import HdrHistogram

SHANGHAI = ZoneInfo("Asia/Shanghai")
STARTED_UNIX = 1_794_326_385.0  # 2026-11-10T15:59:45Z = 23:59:45 in Shanghai: midnight falls at t = 15 s
CLOCK_START = "2026-11-10T23:59:45+08:00"
DURATION_S = 30
KILL_AT_S, DOWN_AT_S = 18.02, 18.45
GLOBAL_TPS = 80
CHANNELS = {"ICBC": (5_000_000, 5_000_000), "CMB": (2_000_000, 3_000_000)}  # single_fen, card_daily_fen
USER_DAILY_FEN = 8_000_000
CLASSES = ("succeeded", "declined", "rate_limited", "shed", "error", "timeout")
HISTORY_HEADER = [
    *("payment_id", "key", "attempt", "user_id", "card_id", "channel", "amount_fen", "intended", "sent", "done"),
    *("status", "code", "outcome", "repayment_id", "replica", "business_date", "replayed", "part"),
]


def rate_at(t: float) -> float:
    points = [(0, 20), (8, 20), (10, 100), (12, 100), (14, 20), (30, 20)]
    for (t0, r0), (t1, r1) in itertools.pairwise(points):
        if t0 <= t <= t1:
            return r0 + (r1 - r0) * (t - t0) / (t1 - t0)
    return 20.0


def business_date(unix: float) -> str:
    return datetime.fromtimestamp(unix, tz=SHANGHAI).strftime("%Y-%m-%d")


@dataclass
class Gateway:
    """Just enough of a gateway: caps, idempotency, a ledger, a global per-second cap, a killable primary."""

    rng: random.Random
    ledger: dict[str, dict[str, Any]] = field(default_factory=dict)
    card_day: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    user_day: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    per_second: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    stored: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    next_id: int = 1

    def replica_at(self, t: float) -> str | None:
        if t < KILL_AT_S:
            return "r1"
        return None if t < DOWN_AT_S + 0.01 else "r2"

    def handle(self, t: float, key: str, user: str, card: str, channel: str, amount: int) -> tuple[int, str, str]:
        """(status, code, repayment_id) for a request arriving at run second t."""
        if self.per_second[int(t)] >= GLOBAL_TPS:
            return 429, "RATE_LIMITED", ""
        self.per_second[int(t)] += 1
        if key in self.stored:
            return self.stored[key]
        unix = STARTED_UNIX + t
        day = business_date(unix)
        single, card_cap = CHANNELS[channel]
        if amount > single:
            answer = (422, "SINGLE_LIMIT_EXCEEDED", "")
        elif self.card_day[card, day] + amount > card_cap or self.user_day[user, day] + amount > USER_DAILY_FEN:
            answer = (422, "DAILY_LIMIT_EXCEEDED", "")
        else:
            repayment_id = f"rp_{self.next_id:06d}"
            self.next_id += 1
            self.card_day[card, day] += amount
            self.user_day[user, day] += amount
            self.ledger[key] = {
                "repayment_id": repayment_id,
                "idempotency_key": key,
                "user_id": user,
                "card_id": card,
                "channel": channel,
                "amount_fen": amount,
                "business_date": day,
                "replica": self.replica_at(t) or "r2",
                "created_at": datetime.fromtimestamp(unix, tz=SHANGHAI).isoformat(timespec="milliseconds"),
            }
            answer = (201, "", repayment_id)
        self.stored[key] = answer
        return answer

    def remaining(self, user: str, card: str, channel: str, t: float) -> int:
        day = business_date(STARTED_UNIX + t)
        return max(min(CHANNELS[channel][1] - self.card_day[card, day], USER_DAILY_FEN - self.user_day[user, day]), 0)


def outcome_of(status: int, code: str) -> str:
    if code == "TIMEOUT":
        return "timeout"
    return {201: "succeeded", 422: "declined", 429: "rate_limited", 409: "shed", 503: "shed"}.get(status, "error")


def simulate(rng: random.Random) -> tuple[list[dict[str, Any]], Gateway]:
    gateway = Gateway(rng)
    users = [
        (f"u{n:03d}", [(f"c{n:03d}{k}", rng.choice(list(CHANNELS))) for k in range(rng.randint(1, 2))])
        for n in range(60)
    ]
    arrivals: list[float] = []
    t = 0.0
    while t < DURATION_S - 2:
        t += rng.expovariate(rate_at(t))
        arrivals.append(t)
    timeouts = {120: True, 700: False}  # arrival number -> whether the gateway recorded it before the timeout
    rows: list[dict[str, Any]] = []
    queue: list[tuple[float, str, int, str, str, str, int, int]] = []
    for number, at in enumerate(arrivals):
        user, cards = rng.choice(users)
        card, channel = rng.choice(cards)
        amount = min(int(rng.lognormvariate(math.log(200_000), 1.2)), 9_000_000)
        queue.append((at, f"p{number:05d}", number, user, card, channel, amount, 0))
    queue.sort()
    while queue:
        intended, payment, number, user, card, channel, amount, part = queue.pop(0)
        key = f"k-{payment}-{part}"
        attempt = 1
        when = intended
        while attempt <= 4:
            lag = rng.uniform(0.0003, 0.003)
            sent = when + lag
            spike = 8 <= sent < 14
            service = rng.lognormvariate(math.log(0.060 if spike else 0.025), 0.45)
            replica = gateway.replica_at(sent)
            row = {
                "payment_id": payment,
                "key": key,
                "attempt": attempt,
                "user_id": user,
                "card_id": card,
                "channel": channel,
                "amount_fen": amount,
                "intended": round(when, 6),
                "sent": round(sent, 6),
                "part": part,
                "replayed": "false",
                "repayment_id": "",
                "replica": "",
                "business_date": "",
            }
            if replica is None:
                row.update(done=sent + 0.004, status=0, code="CONNECTION_ERROR")
            elif attempt == 1 and part == 0 and number in timeouts:
                if timeouts[number]:
                    gateway.handle(sent, key, user, card, channel, amount)
                row.update(done=sent + 2.0, status=0, code="TIMEOUT")
            else:
                replayed = key in gateway.stored
                status, code, repayment_id = gateway.handle(sent, key, user, card, channel, amount)
                row.update(
                    done=sent + service,
                    status=status,
                    code=code,
                    repayment_id=repayment_id,
                    replica=replica,
                    replayed="true" if replayed and status != 429 else "false",
                )
                if status == 201:
                    row["business_date"] = gateway.ledger[key]["business_date"]
            row["outcome"] = outcome_of(row["status"], row["code"])
            rows.append(row)
            if row["status"] in (201, 422):
                if row["status"] == 422 and part == 0:
                    plan_parts(gateway, queue, row)
                break
            when = row["done"] + (rng.uniform(0.5, 1.0) if row["status"] == 429 else 0.3)
            attempt += 1
    for row in rows:
        for name in ("intended", "sent", "done"):
            row[name] = round(STARTED_UNIX + row[name], 6)
    return rows, gateway


def plan_parts(
    gateway: Gateway, queue: list[tuple[float, str, int, str, str, str, int, int]], row: dict[str, Any]
) -> None:
    """Follow the suggested plan: today's affordable parts now, as new payments with new keys."""
    t = row["done"]
    single = CHANNELS[row["channel"]][0]
    budget = min(gateway.remaining(row["user_id"], row["card_id"], row["channel"], t), row["amount_fen"])
    part = 1
    while budget > 0 and part <= 3:
        piece = min(budget, single)
        queue.append(
            (t + 0.05 * part, row["payment_id"], -1, row["user_id"], row["card_id"], row["channel"], piece, part)
        )
        budget -= piece
        part += 1
    queue.sort()


def windows_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rng = random.Random(5)
    seconds: dict[int, dict[str, Any]] = {}

    def window(t: int) -> dict[str, Any]:
        return seconds.setdefault(
            t,
            {
                "t": t,
                "offered": 0,
                "sent": 0,
                "late": 0,
                "dropped": 0,
                "classes": {},
                "codes": defaultdict(int),
                "replicas": defaultdict(int),
                "amount_fen": 0,
                "plans_followed": 0,
            },
        )

    histograms: dict[tuple[int, str, str], HdrHistogram] = {}
    for row in rows:
        intended_s = int(row["intended"] - STARTED_UNIX)
        done_s = int(row["done"] - STARTED_UNIX)
        window(intended_s)["offered"] += 1
        window(intended_s)["sent"] += 1
        target = window(done_s)
        cls = row["outcome"]
        target["classes"].setdefault(cls, {"count": 0})["count"] += 1
        for kind, start in (("intended", row["intended"]), ("service", row["sent"])):
            hist = histograms.setdefault((done_s, cls, kind), HdrHistogram(1, 3_600_000_000, 3))
            hist.record_value(max(int((row["done"] - start) * 1_000_000), 1))
        if row["code"]:
            target["codes"][row["code"]] += 1
        if row["replica"]:
            target["replicas"][row["replica"]] += 1
        if row["status"] == 201 and row["replayed"] == "false":
            target["amount_fen"] += row["amount_fen"]
            target["plans_followed"] += 1 if row["part"] > 0 else 0
    for (t, cls, kind), hist in histograms.items():
        seconds[t]["classes"][cls][kind] = hist.encode().decode("ascii")
    for t in range(max(seconds) + 1):
        window(t)["gen"] = {
            "cpu_pct": round(rng.uniform(15, 35), 1),
            "lag_ms": round(rng.uniform(0.5, 3), 2),
            "workers": 1,
        }
    return [seconds[t] for t in sorted(seconds)]


def write(out: Path) -> None:
    rng = random.Random(11)
    rows, gateway = simulate(rng)
    if out.exists():
        shutil.rmtree(out)
    (out / "history").mkdir(parents=True)
    (out / "locust").mkdir()
    gateway_config = {
        "clock": {"speed": 1.0, "start": CLOCK_START, "anchor_unix": STARTED_UNIX},
        "limits": {"global_tps": GLOBAL_TPS, "replica_tps": 2000, "user_tps": 5, "user_daily_fen": USER_DAILY_FEN},
        "channels": [
            {
                "code": code,
                "single_fen": single,
                "card_daily_fen": daily,
                "concurrency": 64,
                "queue_timeout_ms": 200,
                "latency_ms": {"median": 20, "p99": 120},
            }
            for code, (single, daily) in CHANNELS.items()
        ],
        "router": {"mode": "active-standby", "check_interval_ms": 200, "fall": 2, "rise": 2},
    }
    meta = {
        "scenario": "fixture-small",
        "description": "synthetic 30 s run: midnight, a 5x spike, the primary killed",
        "seed": 11,
        "scale": 1.0,
        "duration_s": DURATION_S,
        "started_unix": STARTED_UNIX,
        "host": "http://127.0.0.1:8080",
        "embedded": True,
        "workers": 1,
        "versions": {"surge": "0.1.0", "python": "3.11", "locust": "2.47.0"},
        "git_commit": "0000000fixture",
        "gateway_config": gateway_config,
        # The spike is rate-limited from 10 s to 14 s: absorbed (no more 429s) 7 s after it starts at 8 s.
        "slo": {"min_success_ratio": 0.95, "max_p99_ms": 800, "max_recovery_s": 10, "max_lost": 0, "max_over_cap": 0},
        "phases": [
            {"name": "warm-up", "start_s": 0, "end_s": 8},
            {"name": "spike", "start_s": 8, "end_s": 14},
            {"name": "after-midnight", "start_s": 14, "end_s": DURATION_S},
        ],
        "spikes": [{"start_s": 8, "end_s": 14}],
        "faults": [{"at_s": 18, "action": "kill", "target": "primary", "duration_s": 5}],
        "client_policy": "follow-plan",
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    with (out / "windows.jsonl").open("w", encoding="utf-8") as handle:
        for window in windows_of(rows):
            handle.write(json.dumps(window, separators=(",", ":")) + "\n")
    generator = {"valid": True, "reasons": [], "cpu_pct_max": 35.0, "lag_ms_p99": 3.0, "late": 0, "dropped": 0}
    (out / "generator.json").write_text(json.dumps(generator, indent=2) + "\n", encoding="utf-8")
    with (out / "history" / "w1.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_HEADER)
        writer.writeheader()
        writer.writerows({name: row[name] for name in HISTORY_HEADER} for row in rows)
    events = [
        (0.0, "scenario", "phase_start", "", "warm-up"),
        (8.0, "scenario", "phase_start", "", "spike"),
        (8.0, "scenario", "spike_start", "", "20/s -> 100/s"),
        (14.0, "scenario", "spike_end", "", ""),
        (14.0, "scenario", "phase_start", "", "after-midnight"),
        (KILL_AT_S, "chaos", "fault_injected", "primary", "kill"),
        (KILL_AT_S + 0.01, "cluster", "killed", "r1", ""),
        (18.25, "cluster", "check_failed", "r1", "connection refused"),
        (DOWN_AT_S, "cluster", "replica_down", "r1", "fall=2"),
        (DOWN_AT_S + 0.01, "cluster", "failover", "r1", "r1->r2"),
    ]
    with (out / "events.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["t_s", "unix", "source", "kind", "target", "detail"])
        for t_s, source, kind, target, detail in events:
            writer.writerow([f"{t_s:.3f}", f"{STARTED_UNIX + t_s:.3f}", source, kind, target, detail])
    with sqlite3.connect(out / "ledger.sqlite") as conn:
        conn.execute(
            "CREATE TABLE repayments (repayment_id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, "
            "user_id TEXT NOT NULL, card_id TEXT NOT NULL, channel TEXT NOT NULL, amount_fen INTEGER NOT NULL, "
            "business_date TEXT NOT NULL, replica TEXT NOT NULL, created_at TEXT NOT NULL)"
        )
        conn.execute(
            "CREATE TABLE idempotency (key TEXT PRIMARY KEY, request_hash TEXT NOT NULL, status INTEGER NOT NULL, "
            "body TEXT NOT NULL, repayment_id TEXT, created_at TEXT NOT NULL)"
        )
        conn.executemany(
            "INSERT INTO repayments VALUES (:repayment_id, :idempotency_key, :user_id, :card_id, :channel, "
            ":amount_fen, :business_date, :replica, :created_at)",
            list(gateway.ledger.values()),
        )
    conn.close()
    (out / "locust" / "report.html").write_text(
        "<!doctype html><title>Locust report</title><p>Synthetic fixture: Locust's own report goes here.</p>\n",
        encoding="utf-8",
    )
    moment = datetime.fromtimestamp(STARTED_UNIX, tz=SHANGHAI) + timedelta(seconds=DURATION_S)
    print(f"wrote {out}: {len(rows)} attempts, {len(gateway.ledger)} repayments, ends {moment.isoformat()}")


if __name__ == "__main__":
    default = Path(__file__).resolve().parents[1] / "fixtures" / "run_small"
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else default)
