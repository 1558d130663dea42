"""The shipped festival day (scripts/make_festival_trace.py) and the trace converters (scripts/trace_convert.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from loadtests.scenario.files import load_scenario
from loadtests.scenario.trace import read_trace

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "examples" / "traces" / "festival-day.csv.gz"


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_the_shipped_day_is_what_the_script_makes() -> None:
    made = _script("make_festival_trace").festival_day(40_000)
    shipped = pd.read_csv(SHIPPED)
    pd.testing.assert_frame_equal(made.reset_index(drop=True), shipped, check_dtype=False)


def test_the_festival_day_has_its_shape() -> None:
    frame = pd.read_csv(SHIPPED)
    stamps = pd.to_datetime(frame["ts"], format="ISO8601")
    per_hour = stamps.dt.hour.value_counts().sort_index()
    assert per_hour.idxmax() in (20, 21, 22)  # the evening peak is the day's busiest hour
    assert per_hour[12] > 1.5 * per_hour[10]  # the lunch peak
    assert per_hour[0] > 4 * per_hour[2]  # the midnight spike
    first_minute = (stamps < stamps.min() + pd.Timedelta(minutes=1)).sum()
    assert first_minute > 15 * len(frame) / 1440  # the festival opens: 15x an average minute
    assert set(frame["channel"]) == {"ICBC", "CCB", "ABC", "BOC", "CMB"}
    assert frame["amount_fen"].median() == pytest.approx(150_000, rel=0.05)
    assert (frame["amount_fen"] > 5_000_000).mean() > 0.005  # a tail above the banks' card limits
    assert SHIPPED.stat().st_size < 1_000_000


def test_the_peak_hour_example_replays_two_minutes() -> None:
    scenario = load_scenario(str(ROOT / "examples" / "traces" / "peak-hour.toml"))
    replay = scenario.replay()
    assert scenario.duration_s == 120 and replay is not None
    frame = pd.read_csv(SHIPPED)
    hour = pd.to_datetime(frame["ts"], format="ISO8601").dt.hour == 21
    assert replay.counts_per_second().sum() == hour.sum()


LOG = """\
10.0.0.1 - - [18/Jun/2025:21:00:01 +0800] "POST /v1/repayments HTTP/1.1" 201 312 "-" "okhttp/4.9" "k1"
10.0.0.2 - - [18/Jun/2025:21:00:01.250 +0800] "POST /v1/repayments HTTP/1.1" 503 120 "-" "okhttp/4.9" "k2"
10.0.0.2 - - [18/Jun/2025:21:00:02.500 +0800] "POST /v1/repayments HTTP/1.1" 201 312 "-" "okhttp/4.9" "k2"
10.0.0.3 - - [18/Jun/2025:21:00:02 +0800] "GET /v1/repayments/abc HTTP/1.1" 200 312 "-" "okhttp/4.9" "-"
not a log line
10.0.0.4 - - [18/Jun/2025:20:59:59 +0800] "POST /v1/repayments?src=app HTTP/1.1" 429 120 "-" "curl/8" "k3"
"""


@pytest.mark.parametrize(("key_field", "expected"), [(True, 3), (False, 4)])
def test_an_access_log_becomes_a_trace(tmp_path: Path, key_field: bool, expected: int) -> None:
    convert = _script("trace_convert")
    log = tmp_path / "access.log"
    log.write_text(LOG)
    out = tmp_path / "trace.csv"
    assert convert.main(["access-log", str(log), "--out", str(out), *(["--key-field"] if key_field else [])]) == 0
    trace = read_trace(out)
    assert len(trace) == expected  # the retry of k2 is dropped only when the key is known
    assert trace.ts[0] == pd.Timestamp("2025-06-18T20:59:59+08:00").timestamp()  # sorted, zone kept
    assert trace.ts[1:3].tolist() == [pd.Timestamp("2025-06-18T21:00:01+08:00").timestamp(),
                                      pd.Timestamp("2025-06-18T21:00:01.250+08:00").timestamp()]  # fmt: skip


def test_a_run_folder_becomes_a_trace(tmp_path: Path) -> None:
    convert = _script("trace_convert")
    run = tmp_path / "run"
    (run / "history").mkdir(parents=True)
    header = "payment_id,key,attempt,user_id,card_id,channel,amount_fen,intended,sent,done,status,code,outcome,part"
    rows = [
        "p1,k1,1,u1,u1-c1,ICBC,500,1750251600.5,0,0,201,,succeeded,0",
        "p1,k1,2,u1,u1-c1,ICBC,500,1750251600.5,0,0,201,,succeeded,0",  # a retry: not an arrival
        "p2,k2,1,u2,u2-c1,CCB,700,1750251601.0,0,0,422,,declined,0",
        "p2,k3,1,u2,u2-c1,CCB,300,1750251700.0,0,0,201,,succeeded,1",  # a plan part: not an arrival
    ]
    (run / "history" / "worker-0.csv").write_text("\n".join([header, *rows]) + "\n")
    out = tmp_path / "trace.parquet"
    assert convert.main(["run", str(run), "--out", str(out)]) == 0
    trace = read_trace(out)
    assert trace.ts.tolist() == [1750251600.5, 1750251601.0]
    assert trace.amount_fen is not None and trace.amount_fen.tolist() == [500, 700]
    assert trace.channel is not None and trace.channel.tolist() == ["ICBC", "CCB"]
    assert convert.main(["run", str(tmp_path / "nothing"), "--out", str(out)]) == 2
