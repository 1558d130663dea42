"""The forecast's arithmetic and its two outputs, forecast.json and forecast.html (docs/forecast.md).

Inputs are plain numbers and frames that `loadtests/orchestration/forecast_evidence.py` read from the evidence
(a trace or a calendar, run folders, a gateway config), each with the source it came from; nothing here reads a
file but the page template. The model, in the order the page shows it:

- Demand per hour = the hour's payments × growth × attempts per payment / 3600 (attempts per second), at p50
  and p90 growth. Capacity is flat over the day: N replicas and N−1 (a find-capacity knee or a given number).
  Utilisation = p90 demand / capacity at N−1; the forecast fits when no hour's is above 1.
- Cap refusals per day and channel at p90 growth: a payment is refused when its amount alone passes a cap
  (single first, then the card's daily cap, then the user's), as the gateway checks them; a card or user paying
  several bills a day is refused more, which this does not count. A trace gives the amounts themselves, a
  calendar a lognormal (closed-form tail shares and partial expectations, two lines of `math.erfc` rather than a
  SciPy dependency surge has no other use for). A split plan moves a payment's rest
  to the next day when the amount passes what the card (or user) may pay in a day.
- Bank quota pressure: each channel's peak-hour p90 demand against its `tps` quota.
- Little's law: calls in flight to a bank = the channel's peak demand × the bank's mean latency, against its
  `concurrency` (per replica: times N−1 replicas when they are active-active).
- Levers: the gap is what would not complete — payments past capacity at N−1 in the breaking hours, payments
  refused by the caps, and payments past a bank quota — and each lever's share of it is what it removes.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reports.render.shared import environment, plotly_bundle, script_json
from runfolder.layout import write_json

SECONDS_PER_HOUR = 3600
Z_99 = 2.3263478740408408


@dataclass(frozen=True)
class Sourced:
    """A figure and where it came from (a run folder's key, a config key, a forecast file key)."""

    value: float
    source: str


@dataclass(frozen=True)
class ChannelLimits:
    code: str
    single_fen: int
    card_daily_fen: int
    tps: float  # the bank's quota for the channel (0: none)
    concurrency: int  # bank calls in flight, per replica
    latency_median_ms: float
    latency_p99_ms: float

    def latency_mean_s(self) -> float:
        """The mean of the lognormal fixed by median and p99 (what Little's law multiplies by)."""
        if self.latency_median_ms <= 0:
            return 0.0
        sigma = math.log(max(self.latency_p99_ms, self.latency_median_ms) / self.latency_median_ms) / Z_99
        return self.latency_median_ms * math.exp(sigma * sigma / 2) / 1000.0


@dataclass(frozen=True)
class Lognormal:
    median: float
    p99: float

    @property
    def mu(self) -> float:
        return math.log(self.median)

    @property
    def sigma(self) -> float:
        return math.log(self.p99 / self.median) / Z_99

    def above(self, cap: float) -> float:
        """P(X > cap)."""
        if self.sigma == 0:
            return float(self.median > cap)
        return 0.5 * math.erfc((math.log(cap) - self.mu) / (self.sigma * math.sqrt(2)))

    def mass_above(self, cap: float) -> float:
        """E[X · 1{X > cap}]: the amount the payments above `cap` ask for, per payment."""
        if self.sigma == 0:
            return self.median if self.median > cap else 0.0
        mean = math.exp(self.mu + self.sigma**2 / 2)
        return mean * 0.5 * math.erfc(-(self.mu + self.sigma**2 - math.log(cap)) / (self.sigma * math.sqrt(2)))


@dataclass(frozen=True)
class ForecastInputs:
    """Everything the forecast needs, read and sourced by the CLI."""

    name: str
    description: str
    # one row per hour: hour (tz-aware, Asia/Shanghai), payments (before growth), peak_second (payments in the
    # busiest second, NaN without a trace); plus one column per channel: that hour's payments on it
    hours: pd.DataFrame
    growth_p50: float
    growth_p90: float
    attempts_per_payment: Sourced
    capacity_n: Sourced
    capacity_n_minus_1: Sourced
    replicas_n: int
    channels: tuple[ChannelLimits, ...]
    caps: Mapping[date, Mapping[str, tuple[int, int, int]]]  # day → channel → (single, card daily, user daily)
    active_active: bool
    demand_source: str
    caps_source: str
    # amounts: a trace's payments (date, channel, amount_fen) or a calendar's lognormal per day
    amounts: pd.DataFrame | None = None
    bills: Mapping[date, Lognormal] = field(default_factory=dict)


def _hour_label(stamp: pd.Timestamp) -> str:
    return stamp.isoformat()


def hourly(inputs: ForecastInputs) -> pd.DataFrame:
    """Per hour: demand p50/p90 (attempts/s), capacity at N and N−1, utilisation at N−1, peak second at p90."""
    hours = inputs.hours
    app = inputs.attempts_per_payment.value
    frame = pd.DataFrame({"hour": hours["hour"]})
    frame["demand_p50_per_s"] = hours["payments"] * inputs.growth_p50 * app / SECONDS_PER_HOUR
    frame["demand_p90_per_s"] = hours["payments"] * inputs.growth_p90 * app / SECONDS_PER_HOUR
    frame["capacity_n_per_s"] = inputs.capacity_n.value
    frame["capacity_n_minus_1_per_s"] = inputs.capacity_n_minus_1.value
    frame["utilisation_p90_n_minus_1"] = frame["demand_p90_per_s"] / inputs.capacity_n_minus_1.value
    frame["peak_second_p90_per_s"] = hours["peak_second"] * inputs.growth_p90 * app
    return frame.reset_index(drop=True)


def first_break(frame: pd.DataFrame) -> dict[str, str | None]:
    """The first hour whose p90 demand passes capacity at N−1, and whose p50 passes capacity at N."""
    p90 = frame[frame["demand_p90_per_s"] > frame["capacity_n_minus_1_per_s"]]
    p50 = frame[frame["demand_p50_per_s"] > frame["capacity_n_per_s"]]
    return {
        "p90_n_minus_1": None if p90.empty else _hour_label(p90["hour"].iloc[0]),
        "p50_n": None if p50.empty else _hour_label(p50["hour"].iloc[0]),
    }


def heatmap(frame: pd.DataFrame) -> pd.DataFrame:
    """Utilisation at N−1 (p90), one row per day and one column per hour of the day (NaN where not forecast)."""
    table = pd.DataFrame(
        {
            "day": frame["hour"].map(lambda h: h.date().isoformat()),
            "hour": frame["hour"].map(lambda h: h.hour),
            "u": frame["utilisation_p90_n_minus_1"],
        }
    )
    return table.pivot_table(index="day", columns="hour", values="u", aggfunc="max").reindex(columns=range(24))


def _refusals(
    amounts: np.ndarray[Any, np.dtype[np.float64]] | None, bill: Lognormal | None, count: float, caps: tuple[int, ...]
) -> list[tuple[str, float, float, float]]:
    """(scope, payments, amount_fen, split_plan_moves) per cap scope for `count` payments of one day and channel."""
    single, card, user = caps
    daily = min(card, user)  # what one card may pay in a day, its user's cap included
    if amounts is not None:
        if len(amounts) == 0:
            return []
        weight = count / len(amounts)
        over_single = amounts > single
        over_card = ~over_single & (amounts > card)
        over_user = ~over_single & ~over_card & (amounts > user)
        return [
            (
                "single",
                over_single.sum() * weight,
                amounts[over_single].sum() * weight,
                (over_single & (amounts > daily)).sum() * weight,
            ),
            ("card", over_card.sum() * weight, amounts[over_card].sum() * weight, over_card.sum() * weight),
            ("user", over_user.sum() * weight, amounts[over_user].sum() * weight, over_user.sum() * weight),
        ]
    assert bill is not None
    p_single, m_single = bill.above(single), bill.mass_above(single)
    low_card = min(card, single)
    p_card, m_card = bill.above(low_card) - p_single, bill.mass_above(low_card) - m_single
    low_user = min(user, card, single)
    p_user = bill.above(low_user) - bill.above(min(card, single))
    m_user = bill.mass_above(low_user) - bill.mass_above(min(card, single))
    moves_single = bill.above(max(single, daily))
    return [
        ("single", count * p_single, count * m_single, count * moves_single),
        ("card", count * p_card, count * m_card, count * p_card),
        ("user", count * p_user, count * m_user, count * p_user),
    ]


def declines(inputs: ForecastInputs, growth: float, cap_factor: float = 1.0) -> list[dict[str, Any]]:
    """Refusals by the money caps per day, channel and scope at `growth` (`cap_factor` raises every cap)."""
    per_day_channel = _payments_per_day_channel(inputs)
    rows: list[dict[str, Any]] = []
    for (day, channel), payments in per_day_channel.items():
        caps = inputs.caps.get(day, {}).get(channel)
        if caps is None:
            continue
        raised = tuple(int(c * cap_factor) for c in caps)
        sample = None
        if inputs.amounts is not None:
            chosen = inputs.amounts[(inputs.amounts["date"] == day) & (inputs.amounts["channel"] == channel)]
            sample = chosen["amount_fen"].to_numpy(dtype=np.float64)
        for scope, count, amount, moves in _refusals(sample, inputs.bills.get(day), payments * growth, raised):
            if round(count) >= 1:
                rows.append(
                    {
                        "date": day.isoformat(),
                        "channel": channel,
                        "scope": scope,
                        "payments": round(count),
                        "amount_fen": round(amount),
                        "split_plan_moves": round(moves),
                    }
                )
    return rows


def _payments_per_day_channel(inputs: ForecastInputs) -> dict[tuple[date, str], float]:
    codes = [c.code for c in inputs.channels if c.code in inputs.hours.columns]
    days = inputs.hours["hour"].map(lambda h: h.date())
    grouped = inputs.hours[codes].groupby(days.to_numpy()).sum()
    return {(day, code): float(grouped.loc[day, code]) for day in grouped.index for code in codes}


def bank_quota(inputs: ForecastInputs) -> list[dict[str, Any]]:
    """Each channel's peak-hour p90 demand (attempts/s) against its quota, and Little's law against its slots."""
    app = inputs.attempts_per_payment.value
    rows = []
    replicas_up = inputs.replicas_n - 1 if inputs.active_active else 1
    for channel in inputs.channels:
        if channel.code not in inputs.hours.columns:
            continue
        per_s = inputs.hours[channel.code] * inputs.growth_p90 * app / SECONDS_PER_HOUR
        peak = float(per_s.max()) if len(per_s) else 0.0
        peak_hour = _hour_label(inputs.hours["hour"].iloc[int(per_s.to_numpy().argmax())]) if len(per_s) else None
        in_flight = peak * channel.latency_mean_s()
        limit = channel.concurrency * max(1, replicas_up)
        rows.append(
            {
                "channel": channel.code,
                "peak_hour": peak_hour,
                "peak_demand_p90_per_s": round(peak, 3),
                "tps": channel.tps,
                "quota_pressure": None if channel.tps <= 0 else round(peak / channel.tps, 4),
                "latency_mean_ms": round(channel.latency_mean_s() * 1000, 2),
                "in_flight": round(in_flight, 2),
                "concurrency_n_minus_1": limit,
                "concurrency_use": round(in_flight / limit, 4),
            }
        )
    return rows


def _throughput_excess(inputs: ForecastInputs, capacity: float, app: float) -> float:
    """Payments past `capacity` (attempts/s) over every hour at p90 growth and `app` attempts per payment."""
    demand = inputs.hours["payments"] * inputs.growth_p90 * app / SECONDS_PER_HOUR
    return float(np.clip(demand - capacity, 0, None).sum()) * SECONDS_PER_HOUR / app


def _quota_excess(inputs: ForecastInputs) -> float:
    app = inputs.attempts_per_payment.value
    total = 0.0
    for channel in inputs.channels:
        if channel.tps > 0 and channel.code in inputs.hours.columns:
            demand = inputs.hours[channel.code] * inputs.growth_p90 * app / SECONDS_PER_HOUR
            total += float(np.clip(demand - channel.tps, 0, None).sum()) * SECONDS_PER_HOUR / app
    return total


def levers(inputs: ForecastInputs, refused: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    """Each lever's share of the gap (payments that would not complete), best first; and the gap itself."""
    app = inputs.attempts_per_payment.value
    excess = _throughput_excess(inputs, inputs.capacity_n_minus_1.value, app)
    refused_total = float(sum(row["payments"] for row in refused))
    quota = _quota_excess(inputs)
    gap = excess + refused_total + quota
    raised = float(sum(row["payments"] for row in declines(inputs, inputs.growth_p90, cap_factor=2.0)))
    closes = {
        "one more replica (N+1 planned: N stay up when one fails)": excess
        - _throughput_excess(inputs, inputs.capacity_n.value, app),
        "split plans (clients follow suggested_plan: refused payments finish in parts)": float(
            sum(row["payments"] for row in refused if row["scope"] in ("single", "card"))
        ),
        "limit raise (single and card daily caps doubled)": refused_total - raised,
        "higher bank quota (each channel's tps raised to its p90 peak)": quota,
        "fewer attempts per payment (no retries or polls: 1.0)": excess
        - _throughput_excess(inputs, inputs.capacity_n_minus_1.value, 1.0),
    }
    ranked: list[dict[str, Any]] = [
        {
            "lever": name,
            "closes_gap_share": 0.0 if gap <= 0 else round(min(1.0, max(0.0, value) / gap), 4),
            "closes_payments": round(max(0.0, value)),
        }
        for name, value in closes.items()
    ]
    ranked.sort(key=lambda row: (-row["closes_gap_share"], row["lever"]))
    return ranked, gap


def _round(value: Any, digits: int = 3) -> float | None:
    return None if value is None or pd.isna(value) else round(float(value), digits)


def forecast_document(inputs: ForecastInputs) -> dict[str, Any]:
    """forecast.json (docs/forecast.md)."""
    frame = hourly(inputs)
    refused = declines(inputs, inputs.growth_p90)
    ranked, gap = levers(inputs, refused)
    breaks = first_break(frame)
    hours = []
    for row in frame.to_dict("records"):
        entry: dict[str, Any] = {"hour": _hour_label(row["hour"])}
        for key in ("demand_p50_per_s", "demand_p90_per_s", "capacity_n_per_s", "capacity_n_minus_1_per_s"):
            entry[key] = _round(row[key])
        entry["utilisation_p90_n_minus_1"] = _round(row["utilisation_p90_n_minus_1"], 4)
        if not pd.isna(row["peak_second_p90_per_s"]):
            entry["peak_second_p90_per_s"] = _round(row["peak_second_p90_per_s"])
        hours.append(entry)
    evidence = [
        {"figure": "demand (payments per hour)", "source": inputs.demand_source},
        {
            "figure": "growth p50 / p90",
            "source": f"forecast file demand.growth ({inputs.growth_p50:g} / {inputs.growth_p90:g})",
        },
        {"figure": "attempts_per_payment", "source": inputs.attempts_per_payment.source},
        {"figure": "capacity_n_per_s", "source": inputs.capacity_n.source},
        {"figure": "capacity_n_minus_1_per_s", "source": inputs.capacity_n_minus_1.source},
        {
            "figure": "declines (caps)",
            "source": inputs.caps_source + " — at p90 growth, each payment against the caps alone",
        },
        {"figure": "bank quota, concurrency, latency", "source": inputs.caps_source},
    ]
    return {
        "name": inputs.name,
        "description": inputs.description,
        "hours": hours,
        "first_break": breaks,
        "declines": refused,
        "levers": ranked,
        "gap_payments": round(gap),
        "bank": bank_quota(inputs),
        "evidence": evidence,
        "fits": breaks["p90_n_minus_1"] is None,
    }


def write_forecast(out: Path, inputs: ForecastInputs) -> dict[str, Any]:
    """forecast.json and forecast.html into `out`; returns the document."""
    document = forecast_document(inputs)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "forecast.json", document)
    page = render_forecast(document, heatmap(hourly(inputs)))
    scratch = out / "forecast.html.tmp"
    scratch.write_text(page, encoding="utf-8")
    scratch.replace(out / "forecast.html")
    return document


def render_forecast(document: Mapping[str, Any], table: pd.DataFrame) -> str:
    charts = _charts(document, table)
    return (
        environment()
        .get_template("forecast.html.j2")
        .render(
            forecast=document,
            sources={row["figure"]: row["source"] for row in document["evidence"]},
            charts={chart["id"]: chart for chart in charts},
            chart_json=script_json(charts),
            plotly_gz=plotly_bundle(),
        )
    )


def _charts(document: Mapping[str, Any], table: pd.DataFrame) -> list[dict[str, Any]]:
    z = [[None if pd.isna(v) else round(float(v), 3) for v in row] for row in table.to_numpy()]
    worst = max((v for row in z for v in row if v is not None), default=1.0)
    charts: list[dict[str, Any]] = [
        {
            "id": "heatmap",
            "data": [
                {
                    "type": "heatmap",
                    "z": z,
                    "x": [f"{h:02d}:00" for h in range(24)],
                    "y": list(table.index),
                    "zmin": 0,
                    "zmax": max(2.0, worst),
                    "colorscale": [
                        [0, "#dafbe1"],
                        [0.5 / max(1.0, worst / 2), "#fff8c5"],
                        [1.0 / max(2.0, worst), "#ffb3a7"],
                        [1, "#82071e"],
                    ],
                    "colorbar": {"title": {"text": "p90 / N−1"}},
                    "text": [[("" if v is None else f"{v:.2f}") for v in row] for row in z],
                    "texttemplate": "%{text}",
                    "hovertemplate": "%{y} %{x}: utilisation %{z:.2f}<extra></extra>",
                }
            ],
            "layout": {
                "title": {"text": "Utilisation at N−1, p90 demand (day × hour; above 1 breaks)"},
                "xaxis": {"type": "category", "title": {"text": "hour (Asia/Shanghai)"}},
                "yaxis": {"type": "category", "autorange": "reversed"},
                "margin": {"l": 100, "r": 20, "t": 60, "b": 60},
                "height": 160 + 34 * len(table.index),
            },
        }
    ]
    hours = document["hours"]
    x = [row["hour"] for row in hours]
    lines = [
        ("demand p50", "demand_p50_per_s", {"color": "#0969da"}),
        ("demand p90", "demand_p90_per_s", {"color": "#cf222e"}),
        ("capacity N", "capacity_n_per_s", {"color": "#1a7f37", "dash": "dash"}),
        ("capacity N−1", "capacity_n_minus_1_per_s", {"color": "#9a6700", "dash": "dash"}),
    ]
    charts.append(
        {
            "id": "demand",
            "data": [
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": name,
                    "x": x,
                    "y": [row[key] for row in hours],
                    "line": {"shape": "hv", **style},
                }
                for name, key, style in lines
            ],
            "layout": {
                "title": {"text": "Demand per hour against capacity (attempts per second)"},
                "yaxis": {"title": {"text": "attempts / s"}, "rangemode": "tozero"},
                "margin": {"l": 60, "r": 20, "t": 60, "b": 50},
                "legend": {"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom"},
                "height": 380,
            },
        }
    )
    ranked = document["levers"]
    if ranked:
        charts.append(
            {
                "id": "levers",
                "data": [
                    {
                        "type": "bar",
                        "orientation": "h",
                        "x": [round(100 * row["closes_gap_share"], 1) for row in ranked][::-1],
                        "y": [html.escape(row["lever"]) for row in ranked][::-1],
                        "marker": {"color": "#0969da"},
                    }
                ],
                "layout": {
                    "title": {"text": "Share of the gap each lever closes (%)"},
                    "xaxis": {"range": [0, 100], "title": {"text": "% of the payments that would not complete"}},
                    "yaxis": {"automargin": True},
                    "margin": {"l": 20, "r": 20, "t": 60, "b": 50},
                    "height": 140 + 40 * len(ranked),
                },
            }
        )
    return charts
