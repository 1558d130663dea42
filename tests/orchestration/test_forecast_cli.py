"""`surge forecast` as CI runs it: exit 0/1/2/3, the first breaking hour on the console and in the step summary,
a capacity run marked invalid (or measured with other replicas) is no evidence, attempts per payment from a run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from loadtests.cli.main import main
from loadtests.scenario.files import load_scenario

HOURLY = [360, 720, 1440, 360]  # payments in hours 20:00-23:00 of 2025-06-18


def _trace(folder: Path) -> Path:
    rows = []
    for hour, count in enumerate(HOURLY):
        start = pd.Timestamp(f"2025-06-18T{20 + hour}:00:00+08:00")
        rows += [(start + pd.Timedelta(seconds=3600 * i / count)).isoformat() for i in range(count)]
    path = folder / "day.csv"
    pd.DataFrame({"ts": rows, "amount_fen": 100_000, "channel": "ICBC"}).to_csv(path, index=False)
    return path


def _capacity_run(folder: Path, knee: float, replicas: int, valid: bool = True) -> Path:
    folder.mkdir(parents=True)
    summary = {"valid": valid, "capacity": {"max_rate_per_s": knee, "limited_by": "rate cap"}, "exit_code": 0}
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "meta.json").write_text(json.dumps({"kind": "capacity", "replicas": replicas,
                                                  "slo": {"max_p99_ms": 500, "min_success_ratio": 0.99}}))  # fmt: skip
    return folder


def _forecast(
    folder: Path, p90: float, extra: str = "", demand: str = "attempts_per_payment = 1.0", p50: float = 1.0
) -> Path:
    path = folder / "forecast.toml"
    path.write_text(f"""
name = "ci"
[demand]
trace = "day.csv"
growth = {{ p50 = {p50}, p90 = {p90} }}
{demand}
[capacity]
n = {{ replicas = 2, run = "cap-2" }}
n_minus_1 = {{ replicas = 1, run = "cap-1" }}
{extra}
""")
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    _trace(tmp_path)
    _capacity_run(tmp_path / "cap-2", 0.8, 2)
    _capacity_run(tmp_path / "cap-1", 0.4, 1)
    return tmp_path


def test_does_not_fit_exit_1_names_the_first_breaking_hour(folder: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Hours of 0.1, 0.2, 0.4, 0.1 payments/s at growth 1; at p90 1.5: 0.15, 0.3, 0.6, 0.15 against 0.4 at N−1."""
    summary = folder / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code = main(["forecast", str(_forecast(folder, 1.5)), "--out", str(folder / "out"),
                 "--emit-scenario", str(folder / "worst.toml")])  # fmt: skip
    assert code == 1
    out = capsys.readouterr().out
    assert "DOES NOT FIT — first breaking hour 2025-06-18T22:00:00+08:00" in out
    assert "::error title=surge forecast does not fit::ci: p90 demand passes the capacity at N-1 from " in out
    assert "2025-06-18T22:00:00+08:00" in summary.read_text()
    document = json.loads((folder / "out" / "forecast.json").read_text())
    assert [h["demand_p90_per_s"] for h in document["hours"]] == pytest.approx([0.15, 0.3, 0.6, 0.15])
    assert document["fits"] is False and document["first_break"]["p50_n"] is None  # 0.4 < 0.8
    assert any(str(folder / "cap-1") in row["source"] for row in document["evidence"])
    scenario = load_scenario(str(folder / "worst.toml"))  # the worst hour, at p90, in 120 s
    assert scenario.duration_s == 120 and scenario.arrivals.growth == pytest.approx(1.5 / 30)
    assert scenario.arrivals.window is not None and scenario.arrivals.window[0].hour == 22
    assert scenario.slo.max_p99_ms == 500  # the N−1 capacity run's SLOs


def test_fits_exit_0(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["forecast", str(_forecast(folder, 0.9, p50=0.8)), "--out", str(folder / "out")]) == 0  # 0.36 < 0.4
    assert "FITS" in capsys.readouterr().out


def test_attempts_per_payment_from_a_rehearsal(folder: Path) -> None:
    run = folder / "rehearsal"
    (run / "history").mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"valid": True}))
    (run / "history" / "worker-0.csv").write_text("payment_id,attempt\np1,1\np1,2\np2,1\np3,1\np3,2\np3,3\n")
    path = _forecast(folder, 1.0, demand='from_run = "rehearsal"')
    assert main(["forecast", str(path), "--out", str(folder / "out")]) == 1  # 0.4 × 2 attempts > 0.4
    document = json.loads((folder / "out" / "forecast.json").read_text())
    assert document["hours"][2]["demand_p90_per_s"] == pytest.approx(0.8)  # 6 attempts / 3 payments
    assert any("6 attempts / 3 payments" in row["source"] for row in document["evidence"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("invalid", "marked invalid"),
        ("replicas", "measured with 3 replicas"),
        ("missing", "no summary.json"),
        ("trace", "demand.trace"),
    ],
)
def test_missing_or_invalid_evidence_exit_3(folder: Path, capsys: pytest.CaptureFixture[str], change: str,
                                            message: str) -> None:  # fmt: skip
    if change == "invalid":
        (folder / "cap-1" / "summary.json").write_text(json.dumps({"valid": False, "capacity": {"max_rate_per_s": 9}}))
    elif change == "replicas":
        (folder / "cap-1" / "meta.json").write_text(json.dumps({"replicas": 3}))
    elif change == "missing":
        (folder / "cap-1" / "summary.json").unlink()
    else:
        (folder / "day.csv").unlink()
    assert main(["forecast", str(_forecast(folder, 1.0)), "--out", str(folder / "out")]) == 3
    assert message in capsys.readouterr().err
    assert not (folder / "out" / "forecast.json").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[limits]\nnope = 1", "unknown key 'limits.nope'"),
        ('[limits]\nconfig = "gw.toml"', "limits.config"),
    ],
)
def test_bad_usage_exit_2(folder: Path, capsys: pytest.CaptureFixture[str], extra: str, message: str) -> None:
    (folder / "gw.toml").write_text("[limits]\nglobal_tps = -1\n")
    assert main(["forecast", str(_forecast(folder, 1.0, extra)), "--out", str(folder / "out")]) == 2
    assert message in capsys.readouterr().err
