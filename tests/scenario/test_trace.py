"""A trace as the arrival schedule (loadtests/scenario/trace.py): exact at growth 1, within stated bounds otherwise,
the same union whatever the number of generator processes, identities never in clear."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loadtests.generator.population import Population
from loadtests.scenario.files import load_scenario
from loadtests.scenario.model import ScenarioError
from loadtests.scenario.parts import Population as PopulationSpec
from loadtests.scenario.trace import Replay, TraceArrival, TraceError, read_trace, window_of

START = "2025-06-18T12:00:00+08:00"
START_UNIX = pd.Timestamp(START).timestamp()


def _write(path: Path, offsets_s: list[float], **columns: list[object]) -> Path:
    times = [pd.Timestamp(START) + pd.Timedelta(seconds=s) for s in offsets_s]
    frame = pd.DataFrame({"ts": [t.isoformat() for t in times], **columns})
    frame.to_csv(path, index=False)
    return path


def _busy_trace(tmp_path: Path, rows: int = 3000, span_s: float = 600.0, seed: int = 1) -> Path:
    rng = random.Random(seed)
    offsets = sorted(rng.uniform(0, span_s) ** 1.0 for _ in range(rows))
    return _write(tmp_path / "busy.csv", offsets, amount_fen=[rng.randint(100, 900000) for _ in range(rows)],
                  user_id=[f"138{rng.randint(0, 10**8):08d}" for _ in range(rows)])  # fmt: skip


def _replay(path: Path, growth: float, seed: int = 0, compress: float = 10.0) -> Replay:
    trace = read_trace(path)
    start, end = window_of(trace, None)
    return Replay(trace, start, end, compress, growth, seed, (end - start) / compress)


def test_growth_one_offers_each_row_at_its_compressed_time(tmp_path: Path) -> None:
    """Hand-counted: rows at trace seconds 0, 0.5, 9.9, 10, 31 under compress 10 are due at run 0, 0.05, 0.99, 1.0,
    3.1 — run seconds [0, 1) hold 3, [1, 2) one, [3, 4) one."""
    path = _write(tmp_path / "t.csv", [0, 0.5, 9.9, 10, 31])
    replay = _replay(path, 1.0)
    assert replay.duration_s == pytest.approx(3.2)
    assert replay.counts_per_second().tolist() == [3, 1, 0, 1]
    schedule = replay.schedule()
    assert schedule.t_s.tolist() == pytest.approx([0, 0.05, 0.99, 1.0, 3.1])
    assert schedule.copy.tolist() == [0] * 5


@pytest.mark.parametrize("growth", [1.0, 0.4, 1.7, 3.25])
def test_the_union_over_processes_is_one_schedule(tmp_path: Path, growth: float) -> None:
    replay = _replay(_busy_trace(tmp_path), growth, seed=7)
    alone = replay.schedule()
    for count in (2, 3):
        parts = [replay.schedule(index, count) for index in range(count)]
        union = sorted(zip(np.concatenate([p.row for p in parts]).tolist(),
                           np.concatenate([p.copy for p in parts]).tolist(),
                           np.concatenate([p.t_s for p in parts]).tolist(), strict=True))  # fmt: skip
        assert union == sorted(zip(alone.row.tolist(), alone.copy.tolist(), alone.t_s.tolist(), strict=True))
        for part in parts:
            assert np.all(np.diff(part.t_s) >= 0)  # each process walks its share in time order


def _per_second(t_s: np.ndarray, seconds: int) -> np.ndarray:
    return np.bincount(np.floor(t_s).astype(int), minlength=seconds)[:seconds]


def test_growth_below_one_stays_within_the_binomial_bound(tmp_path: Path) -> None:
    """Bound: each second's count k_s is Binomial(n_s, g); |k_s − g·n_s| ≤ 5·sd + 1 in every second and the run's
    total within 4·sd, for seeds 0..29 (a 5-sd excursion has odds ~6e-7 per second: a real bias shows, noise not)."""
    growth = 0.35
    path = _busy_trace(tmp_path)
    for seed in range(30):
        replay = _replay(path, growth, seed=seed)
        n = replay.counts_per_second()
        k = _per_second(replay.schedule().t_s, len(n))
        sd = np.sqrt(n * growth * (1 - growth))
        assert np.all(np.abs(k - growth * n) <= 5 * sd + 1), seed
        assert abs(k.sum() - growth * n.sum()) <= 4 * math.sqrt(n.sum() * growth * (1 - growth)), seed
        assert set(replay.schedule().copy.tolist()) <= {0}


def test_growth_above_one_stays_within_the_poisson_bound(tmp_path: Path) -> None:
    """Every row stays; its ⌊g−1⌋ + Bernoulli(frac) extras land uniformly within ±0.5 s. Expected extras in second s:
    μ_s = Σ_rows (g−1)·p_rs with p_rs the overlap of [t−0.5, t+0.5] with [s, s+1); variance
    Σ_rows ⌊g−1⌋·p(1−p) + frac·p·(1 − frac·p) (computed here row by row, independently of the code). Bound:
    |extras_s − μ_s| ≤ 5·sd + 1 in every second, for seeds 0..29."""
    growth = 2.6
    whole, frac = 1, 0.6
    path = _busy_trace(tmp_path)
    replay = _replay(path, growth)
    n = replay.counts_per_second()
    seconds = len(n)
    mu = np.zeros(seconds)
    var = np.zeros(seconds)
    for t in replay.due(replay.rows()):
        for s in range(max(0, math.floor(t - 0.5)), min(seconds, math.floor(t + 0.5) + 1)):
            p = max(0.0, min(t + 0.5, s + 1) - max(t - 0.5, s))
            if s == 0:
                p += max(0.0, 0.0 - (t - 0.5))  # clipped at run time 0
            if s == seconds - 1:
                p += max(0.0, (t + 0.5) - replay.duration_s)  # clipped at the end
            mu[s] += (growth - 1) * p
            var[s] += whole * p * (1 - p) + frac * p * (1 - frac * p)
    for seed in range(30):
        replay = _replay(path, growth, seed=seed)
        schedule = replay.schedule()
        originals = _per_second(schedule.t_s[schedule.copy == 0], seconds)
        extras = _per_second(schedule.t_s[schedule.copy > 0], seconds)
        assert originals.tolist() == n.tolist(), seed  # the rows themselves, exactly
        assert np.all(np.abs(extras - mu) <= 5 * np.sqrt(var) + 1), seed


def test_identities_are_pseudonyms_under_a_per_run_salt(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", [0, 1, 2, 3], user_id=["13800000001", "13800000002", "13800000001", ""],
                  card_id=["6222000011112222", "", "6222000011112222", ""], channel=["ICBC", "CCB", "ICBC", ""],
                  amount_fen=[100, 200, 300, 400])  # fmt: skip
    replay = _replay(path, 1.0, compress=1.0)
    first = list(replay.arrivals(replay.schedule(), "salt-one"))
    again = list(replay.arrivals(replay.schedule(), "salt-one"))
    other = list(replay.arrivals(replay.schedule(), "salt-two"))
    assert first == again
    assert first[0].user_id == first[2].user_id and first[0].card_id == first[2].card_id  # one person stays one
    assert first[0].user_id != other[0].user_id  # two runs cannot be joined on the pseudonyms
    clear = {"13800000001", "13800000002", "6222000011112222"}
    assert not any(value in str(arrival) for arrival in first + other for value in clear)
    assert [a.amount_fen for a in first] == [100, 200, 300, 400]
    assert [a.channel for a in first] == ["ICBC", "CCB", "ICBC", None]
    assert first[3] == TraceArrival(None, None, None, 400)
    grown = _replay(path, 2.0, compress=1.0)
    extras = [a for a, c in zip(grown.arrivals(grown.schedule(), "s"), grown.schedule().copy.tolist(), strict=True)
              if c > 0]  # fmt: skip
    assert len(extras) == 4 and len({a.user_id for a in extras}) == 4  # fresh identities, the row's amount kept
    assert sorted(a.amount_fen or 0 for a in extras) == [100, 200, 300, 400]


def test_population_pays_what_the_trace_says() -> None:
    population = Population(PopulationSpec(users=10), ["ICBC", "CCB"], seed=1)
    rng = random.Random(1)
    payment = population.replayed(TraceArrival("tabc", "tcard", "CCB", 12345), rng)
    assert (payment.user.user_id, payment.card.card_id, payment.card.channel, payment.amount_fen) == (
        "tabc", "tcard", "CCB", 12345)  # fmt: skip
    drawn = population.replayed(TraceArrival(None, None, "ICBC", 777), rng)
    assert drawn.card.channel == "ICBC" and drawn.amount_fen == 777 and drawn.user.user_id.startswith("u")
    unknown = population.replayed(TraceArrival("tx", None, "NOPE", 5), rng)
    assert unknown.card.channel in {"ICBC", "CCB"} and unknown.card.card_id == "tx-c1"


def _scenario(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(f'name = "replay"\nseed = 3\n{body}')
    return path


def test_a_trace_scenario_and_its_keys(tmp_path: Path) -> None:
    (tmp_path / "traces").mkdir()
    _write(tmp_path / "traces" / "day.csv", [float(s) for s in range(0, 7200, 2)])
    ref = _scenario(tmp_path, '[arrivals]\nprocess = "trace"\ntrace = "traces/day.csv"\n'
                    'window = ["2025-06-18T12:30:00+08:00", "2025-06-18T13:30:00+08:00"]\ncompress = 30\n')  # fmt: skip
    scenario = load_scenario(str(ref))
    assert scenario.duration_s == pytest.approx(120)  # the compressed window
    replay = scenario.replay()
    assert replay is not None and replay.counts_per_second().tolist() == [15] * 120
    assert [name for name, _, _ in scenario.phases()] == [f"trace-{m}" for m in ("12:30", "12:40", "12:50", "13:00",
                                                                                  "13:10", "13:20")]  # fmt: skip
    assert scenario.phases()[1][1:] == pytest.approx((20.0, 40.0))
    scaled = scenario.scaled(2.0, 60.0)  # --scale 2 --duration 60
    assert scaled.arrivals.growth == 2.0 and scaled.arrivals.compress == pytest.approx(60)
    assert scaled.replay() is not None and scaled.replay().counts_per_second().sum() == 1800  # type: ignore[union-attr]
    assert sum(per_s for _, per_s in scenario.breakpoints()[::2]) == pytest.approx(1800)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[arrivals]\nprocess = "trace"\ntrace = "t.csv"\n[[rate]]\nat_s = 0\nper_s = 1\n', "'rate' is not allowed"),
        ('[arrivals]\nprocess = "trace"\ntrace = "missing.csv"\n', "'arrivals.trace' trace"),
        ('duration_s = 5\n[arrivals]\nprocess = "trace"\n', "'arrivals.trace' is required"),
        ("duration_s = 5\n[arrivals]\ngrowth = 2\n[[rate]]\nat_s = 0\nper_s = 1\n", "'arrivals.growth' belongs"),
        ('[arrivals]\nprocess = "trace"\ntrace = "t.csv"\ngrowth = 0\n', "growth"),
    ],
)
def test_bad_trace_scenarios_are_usage_errors(tmp_path: Path, body: str, message: str) -> None:
    _write(tmp_path / "t.csv", [0, 1])
    with pytest.raises(ScenarioError, match=message):
        load_scenario(str(_scenario(tmp_path, body)))


def test_trace_files_parquet_epoch_and_bad_ones(tmp_path: Path) -> None:
    csv_path = _write(tmp_path / "t.csv", [0, 1.5, 3], amount_fen=[1, 2, 3], channel=["ICBC", "CCB", "ICBC"])
    parquet = tmp_path / "t.parquet"
    frame = pd.read_csv(csv_path)
    frame["ts"] = pd.to_datetime(frame["ts"], format="ISO8601")
    frame.to_parquet(parquet)
    epoch = tmp_path / "epoch.csv"
    epoch.write_text("ts\n" + "\n".join(str(START_UNIX + s) for s in (0, 1.5, 3)) + "\n")
    for path in (parquet, epoch):
        assert read_trace(path).ts.tolist() == pytest.approx(read_trace(csv_path).ts.tolist())
    assert read_trace(parquet).amount_fen.tolist() == [1, 2, 3]  # type: ignore[union-attr]
    naive = tmp_path / "naive.csv"
    naive.write_text("ts\n2025-06-18T12:00:00\n")
    with pytest.raises(TraceError, match="with an offset"):
        read_trace(naive)
    fractional = tmp_path / "fen.csv"
    fractional.write_text(f"ts,amount_fen\n{START},1.5\n")
    with pytest.raises(TraceError, match="integer fen"):
        read_trace(fractional)


def test_a_rewritten_trace_is_read_again(tmp_path: Path) -> None:
    """A long-lived Locust (the web UI) replays the file as it is now, not as it was first read."""
    import os

    path = _write(tmp_path / "t.csv", [0, 1, 2])
    ref = _scenario(tmp_path, '[arrivals]\nprocess = "trace"\ntrace = "t.csv"\nwindow = ["' + START + '", "'
                    '2025-06-18T12:00:10+08:00"]\n')  # fmt: skip
    first = load_scenario(str(ref)).replay()
    assert first is not None and first.counts_per_second().sum() == 3
    _write(path, [0, 1, 2, 3, 4])
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    again = load_scenario(str(ref)).replay()
    assert again is not None and again.counts_per_second().sum() == 5
