"""The open model against a real gateway replica: offered-rate accuracy, and a 2-process run that ends by itself
and whose merged windows equal the windows one process would record over the same history."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from pathlib import Path

import pytest

from loadtests.generator.windows import Window, decode_histogram
from mock_gateway.config_sources import load_config
from runfolder.outcomes import OUTCOME_CLASSES as OUTCOMES
from tests.support.procs import locust_exit_code, replica, run_locust
from tests.support.runs import generator, history, windows

STEADY = """
name = "steady"
duration_s = 10
seed = 9
[population]
users = 5000
bill_fen = {{ median = 100000, p99 = 2000000 }}
[[rate]]
at_s = 0
per_s = {rate}
[client]
timeout_s = 1.0
[arrivals]
process = "{process}"
pool = 40
"""
LEAD_S = 3.0


def first_attempts(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [r for r in rows if r["attempt"] == "1" and r["part"] == "0"]


async def test_offered_rate_is_within_two_percent_for_ten_seconds(tmp_path: Path) -> None:
    scenario = tmp_path / "steady.toml"
    scenario.write_text(STEADY.format(rate=100, process="even"), encoding="utf-8")
    out = tmp_path / "run"
    with replica(tmp_path) as url:
        t0 = time.time() + LEAD_S
        rc = await run_locust(url, scenario, out, "--surge-start-unix", repr(t0), timeout_s=45)
    assert rc == locust_exit_code(out)
    lines = windows(out)
    assert sum(w["offered"] for w in lines) == 1000  # even spacing: exactly the curve's integral
    verdict = generator(out)
    assert verdict["started_unix"] == t0
    if not verdict["valid"]:
        # The generator found its host too starved to send on time (CPU, wake-up lag, late arrivals) and said so,
        # as surge does for such a run: the timings below would measure the scheduler, not the generator.
        pytest.skip(f"machine too busy, the generator judged its run invalid: {verdict['reasons']}")
    sent = [float(r["sent"]) - t0 for r in first_attempts(history(out))]
    in_window = sum(1 for s in sent if 0 <= s < 10)
    assert abs(in_window - 1000) <= 20, in_window  # ±2 % of what the curve asks, by actual send time
    lateness = sorted(float(r["sent"]) - float(r["intended"]) for r in first_attempts(history(out)))
    assert lateness[len(lateness) // 2] < 0.01  # sent on time, not when a user happened to be free
    assert verdict["late"] + verdict["dropped"] <= 50  # 5 %: this machine's two cores are shared


async def test_two_processes_end_by_themselves_and_merge_like_one(tmp_path: Path) -> None:
    scenario = tmp_path / "steady.toml"
    scenario.write_text(STEADY.format(rate=75, process="poisson").replace("duration_s = 10", "duration_s = 4"))
    out = tmp_path / "run"
    started = time.monotonic()
    with replica(tmp_path) as url:
        rc = await run_locust(url, scenario, out, "--processes", "2", timeout_s=50)
    assert rc == locust_exit_code(out)
    assert time.monotonic() - started < 45
    assert sorted(p.name for p in (out / "history").glob("*.csv")) == ["worker-0.csv", "worker-1.csv"]
    rows = history(out)
    assert all(
        r["outcome"] in OUTCOMES and r["key"] and r["user_id"] and float(r["done"]) >= float(r["sent"]) for r in rows
    )
    assert len({r["payment_id"] for r in rows}) >= 200
    verdict = generator(out)
    t0 = verdict["started_unix"]
    lines = windows(out)
    assert [w["t"] for w in lines] == list(range(len(lines)))
    samples = [w["gen"]["workers"] for w in lines]  # each process samples once a second (a late tick may slip)
    # The master closes seconds on its own clock after both processes said their last words: on a loaded machine
    # a few more, with no process sample in them. Judge the seconds the processes were running (the run's 4 s+).
    while samples and samples[-1] == 0:
        samples.pop()
    assert len(samples) >= 4, lines
    assert abs(sum(samples) - 2 * len(samples)) <= 4 and min(samples[:-1]) >= 1
    offered = sum(w["offered"] for w in lines)
    assert abs(offered - 300) < 5 * math.sqrt(300)
    assert offered == sum(w["sent"] for w in lines) + sum(w["dropped"] for w in lines)
    assert sum(w["offered"] for w in lines) == len({r["payment_id"] for r in rows if r["part"] == "0"}) + sum(
        w["dropped"] for w in lines
    )

    # One process's windows over the same attempts: rebuilt from the history, compared second by second.
    single: dict[int, Window] = defaultdict(lambda: Window(0))
    for r in rows:
        t = math.floor(float(r["done"]) - t0)
        window = single[t]
        window.t = t
        window.record(
            r["outcome"],  # type: ignore[arg-type]
            intended_us=(float(r["done"]) - float(r["intended"])) * 1e6,
            service_us=(float(r["done"]) - float(r["sent"])) * 1e6,
            code=r["code"],
            replica=r["replica"],
            amount_fen=int(r["amount_fen"]) if r["outcome"] == "succeeded" else 0,
        )
    merged = {w["t"]: w for w in lines}
    for t, window in single.items():
        line = merged[t]
        assert {name: c["count"] for name, c in line["classes"].items()} == {
            name: s.count for name, s in window.classes.items()
        }
        assert line["codes"] == dict(window.codes) and line["replicas"] == dict(window.replicas)
        assert line["amount_fen"] == window.amount_fen
        for name, stats in window.classes.items():
            for kind, mine in (("intended", stats.intended), ("service", stats.service)):
                theirs = decode_histogram(line["classes"][name][kind])
                for pct in (50, 90, 99, 100):
                    # the CSV keeps microseconds, so a value may sit one HDR bucket over
                    a, b = mine.get_value_at_percentile(pct), theirs.get_value_at_percentile(pct)
                    assert abs(a - b) <= max(2, 0.002 * b), (t, name, kind, pct, a, b)


async def test_an_exhausted_pool_drops_and_counts_instead_of_slowing_the_arrivals(tmp_path: Path) -> None:
    """Two users against a bank answering in ~200 ms cannot pay 150 arrivals a second: the arrivals still come
    on schedule, the ones no user reaches within a second are dropped, and the run says it is invalid — because
    the scenario's pool ran out (every user busy when they fell due), not because the generator fell behind."""
    scenario = tmp_path / "steady.toml"
    text = STEADY.format(rate=150, process="even").replace("duration_s = 10", "duration_s = 4")
    scenario.write_text(text.replace("pool = 40", "pool = 2"), encoding="utf-8")
    out = tmp_path / "run"
    slow_banks = "\n".join(  # the default banks (the population's channels), each answering in ~200 ms
        f'[[channels]]\ncode = "{c.code}"\nsingle_fen = {c.single_fen}\ncard_daily_fen = {c.card_daily_fen}\n'
        "latency_ms = { median = 200, p99 = 300 }"
        for c in load_config(None, env={}).channels
    )
    with replica(tmp_path, slow_banks) as url:
        t0 = time.time() + LEAD_S
        rc = await run_locust(url, scenario, out, "--surge-start-unix", repr(t0), timeout_s=45)
    assert rc == locust_exit_code(out)
    lines = windows(out)
    offered, sent, dropped = (sum(w[key] for w in lines) for key in ("offered", "sent", "dropped"))
    assert offered == 600  # every arrival of the curve is accounted for, reached or not
    assert offered == sent + dropped
    assert dropped >= 400, (sent, dropped)  # two users at ~5 payments/s each reach a few dozen a second at most
    started = first_attempts(history(out))
    assert len(started) == sent
    # None begun past the 1 s drop bound. The send time is read just after that check, with only CPU work between
    # (no gevent yield), so only an OS stall separates them: 0.5 s covers one at 4x CPU contention, and without
    # the drop two users facing 150 arrivals a second would start them seconds late.
    assert all(float(r["sent"]) - float(r["intended"]) <= 1.0 + 0.5 for r in started)
    verdict = generator(out)
    assert verdict["valid"] is False
    assert verdict["dropped"] == dropped
    assert verdict["limited_by"] == "pool", verdict["reasons"]
    assert 2 * verdict["starved"] >= verdict["late"] + verdict["dropped"]  # most found every user busy
    assert sum(w["starved"] for w in lines) == verdict["starved"]
    assert any("user pool ([arrivals] pool) ran out" in reason for reason in verdict["reasons"]), verdict["reasons"]
