"""The forecast's arithmetic on a case small enough to compute by hand (reports/forecast/)."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reports.forecast.demand import heatmap, hourly
from reports.forecast.document import forecast_document
from reports.forecast.inputs import ChannelLimits, ForecastInputs, Lognormal, Sourced
from reports.forecast.page import write_forecast

DAY = date(2026, 6, 18)


def _inputs(**changes: object) -> ForecastInputs:
    """One day, four hours of 3600 / 7200 / 10800 / 1800 payments, all on ICBC; growth p50 1.0, p90 1.5;
    2 attempts per payment; capacity 5/s with 3 replicas, 4/s with 2; four bills of 100, 600, 1200, 3000 fen
    against caps single 1000, card 2000, user 10000; ICBC's quota 5/s, 100 ms latency, 2 slots per replica."""
    hours = pd.DataFrame(
        {
            "hour": [pd.Timestamp(f"2026-06-18T0{h}:00:00+08:00") for h in range(4)],
            "payments": [3600.0, 7200.0, 10800.0, 1800.0],
            "peak_second": [3.0, 5.0, 7.0, 1.0],
        }
    )
    hours["ICBC"] = hours["payments"]
    values: dict[str, object] = {
        "name": "hand",
        "description": "",
        "hours": hours,
        "growth_p50": 1.0,
        "growth_p90": 1.5,
        "attempts_per_payment": Sourced(2.0, "forecast file"),
        "capacity_n": Sourced(5.0, "cap-3"),
        "capacity_n_minus_1": Sourced(4.0, "cap-2"),
        "replicas_n": 3,
        "channels": (
            ChannelLimits("ICBC", 1000, 2000, tps=5, concurrency=2, latency_median_ms=100, latency_p99_ms=100),
        ),
        "caps": {DAY: {"ICBC": (1000, 2000, 10000)}},
        "active_active": True,
        "demand_source": "trace",
        "caps_source": "gateway.toml",
        "amounts": pd.DataFrame({"date": [DAY] * 4, "channel": ["ICBC"] * 4, "amount_fen": [100, 600, 1200, 3000]}),
    }
    values.update(changes)
    return ForecastInputs(**values)  # type: ignore[arg-type]


def test_demand_heatmap_and_first_breaking_hour_by_hand() -> None:
    frame = hourly(_inputs())
    # payments × growth × 2 attempts / 3600
    assert frame["demand_p50_per_s"].tolist() == pytest.approx([2, 4, 6, 1])
    assert frame["demand_p90_per_s"].tolist() == pytest.approx([3, 6, 9, 1.5])
    assert frame["peak_second_p90_per_s"].tolist() == pytest.approx([9, 15, 21, 3])  # peak second × 1.5 × 2
    cells = heatmap(frame)
    assert list(cells.index) == ["2026-06-18"]
    assert cells.loc["2026-06-18", [0, 1, 2, 3]].tolist() == pytest.approx([0.75, 1.5, 2.25, 0.375])  # p90 / 4
    assert cells.loc["2026-06-18", 4:].isna().all()
    document = forecast_document(_inputs())
    assert document["first_break"] == {
        "p90_n_minus_1": "2026-06-18T01:00:00+08:00",  # 6 > 4
        "p50_n": "2026-06-18T02:00:00+08:00",
    }  # 6 > 5
    assert document["fits"] is False
    assert [h["utilisation_p90_n_minus_1"] for h in document["hours"]] == [0.75, 1.5, 2.25, 0.375]


def test_declines_bank_pressure_and_levers_by_hand() -> None:
    document = forecast_document(_inputs())
    # 23,400 payments × 1.5 = 35,100 at p90, each of the four bills standing for 8,775. Over the single cap (1000):
    # 1200 and 3000 → 17,550 payments asking 4200 × 8775 fen; the plan of 3000 passes the card's day (2000): moved.
    assert document["declines"] == [
        {
            "date": "2026-06-18",
            "channel": "ICBC",
            "scope": "single",
            "payments": 17550,
            "amount_fen": 36855000,
            "split_plan_moves": 8775,
        }
    ]
    bank = document["bank"][0]
    assert bank["peak_demand_p90_per_s"] == 9 and bank["quota_pressure"] == pytest.approx(1.8)
    assert bank["in_flight"] == pytest.approx(0.9)  # 9/s × 0.1 s
    assert bank["concurrency_n_minus_1"] == 4 and bank["concurrency_use"] == pytest.approx(0.225)  # 2 slots × 2
    # gap: past N−1 (2 + 5 attempts/s over an hour / 2 = 12,600) + refused 17,550 + past the quota (1 + 4 → 9,000)
    assert document["gap_payments"] == 39150
    shares = {row["lever"].split(" (")[0]: row["closes_gap_share"] for row in document["levers"]}
    assert shares == pytest.approx(
        {
            "split plans": 17550 / 39150,  # every single/card refusal finishes in parts
            "fewer attempts per payment": 10800 / 39150,  # at 1 attempt: only 0.5/s over 4 → 1,800 left of 12,600
            "higher bank quota": 9000 / 39150,
            "limit raise": 8775 / 39150,  # caps doubled: only the 3000-fen bill is refused
            "one more replica": 3600 / 39150,  # past 5/s instead of 4/s: 1 + 4 → 9,000 of 12,600
        },
        abs=1e-4,
    )
    order = ["split plans", "fewer attempts per payment", "higher bank quota", "limit raise", "one more replica"]
    assert [row["lever"].split(" (")[0] for row in document["levers"]] == order


def test_a_forecast_that_fits() -> None:
    document = forecast_document(_inputs(capacity_n=Sourced(20.0, "a"), capacity_n_minus_1=Sourced(10.0, "b")))
    assert document["fits"] is True and document["first_break"] == {"p90_n_minus_1": None, "p50_n": None}


def test_lognormal_tails_by_hand() -> None:
    """σ = 1 (p99 = median·e^z99): P(X > median) = ½; E[X·1{X > median}] = e^(μ+½)·Φ(1) = 1000·1.64872·0.841345."""
    bill = Lognormal(1000, 1000 * math.exp(2.3263478740408408))
    assert bill.sigma == pytest.approx(1.0)
    assert bill.above(1000) == pytest.approx(0.5)
    assert bill.mass_above(1000) == pytest.approx(1000 * math.exp(0.5) * 0.841344746, rel=1e-6)
    rng = np.random.default_rng(1)
    sample = rng.lognormal(math.log(1000), 1.0, 400_000)
    assert bill.above(3000) == pytest.approx((sample > 3000).mean(), abs=0.002)
    calendar = _inputs(amounts=None, bills={DAY: bill})
    single = next(r for r in forecast_document(calendar)["declines"] if r["scope"] == "single")
    assert single["payments"] == round(35100 * bill.above(1000))


def test_the_outputs(tmp_path: Path) -> None:
    document = write_forecast(tmp_path, _inputs())
    assert json.loads((tmp_path / "forecast.json").read_text()) == json.loads(json.dumps(document))
    assert set(document) >= {"name", "hours", "first_break", "declines", "levers", "evidence", "fits"}
    page = (tmp_path / "forecast.html").read_text()
    assert page.index('id="heatmap"') < page.index('id="demand"')  # the heatmap first
    assert "cap-2" in page and "gateway.toml" in page and "DOES NOT FIT" in page  # every figure names its source
    assert "https://" not in page.split('id="plotly-gz"')[0]  # self-contained
