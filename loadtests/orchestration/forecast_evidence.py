"""The evidence a forecast file names, read into sourced figures for `reports.forecast`'s arithmetic.

A trace or a bills-due calendar becomes demand per hour and channel, a rehearsal run folder the attempts per
payment, find-capacity run folders the capacity at N and N−1 replicas, the gateway config the caps of each day.
Evidence that is missing or invalid (a capacity run marked invalid, or measured with another number of replicas
than the file says) is `MissingEvidence`, exit 3: nothing is forecast from it.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loadtests.errors import MissingEvidence
from loadtests.scenario.forecast import ForecastFile
from loadtests.scenario.trace import SHANGHAI, Trace, TraceError, read_trace, window_of
from mock_gateway.config import GatewayConfig
from reports.forecast.inputs import ChannelLimits, ForecastInputs, Lognormal, Sourced
from runfolder.layout import RunFolder, read_json_object


def read_inputs(forecast: ForecastFile, config: GatewayConfig, caps_source: str) -> ForecastInputs:
    """Every figure the forecast's arithmetic needs, each with the evidence it came from."""
    demand = forecast.demand
    codes = [channel.code for channel in config.channels]
    amounts: pd.DataFrame | None = None
    bills: dict[date, Lognormal] = {}
    if demand.trace is not None:
        try:
            trace = read_trace(Path(demand.trace))
        except TraceError as exc:
            raise MissingEvidence(f"demand.trace: {exc}") from None
        hours, amounts, source = _trace_hours(trace, demand.window, codes)
    else:
        hours, bills, source = _calendar_hours(forecast, codes)
    days = sorted({stamp.date() for stamp in hours["hour"]})
    caps = {
        day: {
            channel.code: tuple(config.money_caps(channel, datetime.combine(day, time(12), SHANGHAI)))
            for channel in config.channels
        }
        for day in days
    }
    channels = tuple(
        ChannelLimits(
            c.code, c.single_fen, c.card_daily_fen, c.tps, c.concurrency, c.latency_ms.median, c.latency_ms.p99
        )
        for c in config.channels
    )
    return ForecastInputs(
        name=forecast.name,
        description=forecast.description,
        hours=hours,
        growth_p50=demand.growth.p50,
        growth_p90=demand.growth.p90,
        attempts_per_payment=_attempts_per_payment(forecast),
        capacity_n=_capacity(forecast.capacity.n.run, forecast.capacity.n.per_s, forecast.capacity.n.replicas, "n"),
        capacity_n_minus_1=_capacity(
            forecast.capacity.n_minus_1.run,
            forecast.capacity.n_minus_1.per_s,
            forecast.capacity.n_minus_1.replicas,
            "n_minus_1",
        ),
        replicas_n=forecast.capacity.n.replicas,
        channels=channels,
        caps=caps,  # type: ignore[arg-type]
        active_active=config.router.mode == "active-active",
        demand_source=source,
        caps_source=caps_source + " (channels.single_fen, card_daily_fen, tps, concurrency, latency_ms; "
        "limits.user_daily_fen and [[limits.schedule]] at noon of each day; router.mode)",
        amounts=amounts,
        bills=bills,
    )


def _trace_hours(
    trace: Trace, window: tuple[datetime, datetime] | None, codes: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame | None, str]:
    """Payments per Asia/Shanghai hour of the trace (every hour from the first to the last, zeros included), the
    busiest second of each, and per channel; the amounts per day and channel when the trace has them. Rows
    without a known channel are spread over the gateway's channels in turn (row i → channel i mod n)."""
    start, end = window_of(trace, window)
    first, last = np.searchsorted(trace.ts, [start, end], side="left")
    if last <= first:
        raise MissingEvidence(f"demand.trace {trace.path}: no row inside the window")
    ts = trace.ts[first:last]
    stamps = pd.to_datetime(ts, unit="s", utc=True).tz_convert(SHANGHAI)
    channel = np.asarray([codes[i % len(codes)] for i in range(len(ts))], dtype=object)
    if trace.channel is not None:
        given = trace.channel[first:last]
        known = np.isin(given, codes)
        channel = np.where(known, given, channel)
    rows = pd.DataFrame({"hour": stamps.floor("h"), "second": np.floor(ts), "channel": channel})
    index = pd.date_range(rows["hour"].min(), rows["hour"].max(), freq="h")
    payments = rows.groupby("hour").size().reindex(index, fill_value=0)
    peak = rows.groupby(["hour", "second"]).size().groupby(level=0).max().reindex(index, fill_value=0)
    per_channel = rows.groupby(["hour", "channel"]).size().unstack(fill_value=0).reindex(index, fill_value=0)
    hours = pd.DataFrame(
        {"hour": index, "payments": payments.to_numpy(dtype=float), "peak_second": peak.to_numpy(dtype=float)}
    )
    for code in codes:
        hours[code] = per_channel[code].to_numpy(dtype=float) if code in per_channel else 0.0
    amounts = None
    if trace.amount_fen is not None:
        amounts = pd.DataFrame(
            {"date": [h.date() for h in stamps], "channel": channel, "amount_fen": trace.amount_fen[first:last]}
        )
    span = f"{stamps[0].isoformat(timespec='seconds')} to {stamps[-1].isoformat(timespec='seconds')}"
    source = f"trace {trace.path} ({len(ts)} payments from {span})"
    if amounts is None:
        source += "; no amount_fen column: cap refusals not forecast"
    return hours, amounts, source


def _calendar_hours(forecast: ForecastFile, codes: list[str]) -> tuple[pd.DataFrame, dict[date, Lognormal], str]:
    """Demand per hour from the bills-due calendar; its channel shares name the gateway's channels (checked by
    `surge forecast` before any evidence is read)."""
    records: list[dict[str, Any]] = []
    bills: dict[date, Lognormal] = {}
    for day in sorted(forecast.demand.days, key=lambda d: d.date):
        shares = day.channel_shares or {code: 1 / len(codes) for code in codes}
        bills[day.date] = Lognormal(day.amount_fen.median, day.amount_fen.p99)
        midnight = pd.Timestamp(datetime.combine(day.date, time(0), SHANGHAI))
        for hour, share in enumerate(day.hour_profile):
            payments = day.payments * share
            record: dict[str, Any] = {
                "hour": midnight + pd.Timedelta(hours=hour),
                "payments": payments,
                "peak_second": math.nan,
            }
            record.update({code: payments * shares.get(code, 0.0) for code in codes})
            records.append(record)
    source = (
        f"bills-due calendar of the forecast file ({len(forecast.demand.days)} days, "
        "demand.days.payments × hour_profile)"
    )
    return pd.DataFrame(records), bills, source


def _attempts_per_payment(forecast: ForecastFile) -> Sourced:
    demand = forecast.demand
    if demand.attempts_per_payment is not None:
        return Sourced(demand.attempts_per_payment, "forecast file demand.attempts_per_payment")
    run = Path(str(demand.from_run))
    _valid_run(run, "demand.from_run")
    files = sorted(RunFolder(run).history.glob("*.csv"))
    if not files:
        raise MissingEvidence(f"demand.from_run {run}: no history/*.csv")
    ids = pd.concat([pd.read_csv(f, usecols=["payment_id"], dtype=str) for f in files])["payment_id"]
    if ids.empty:
        raise MissingEvidence(f"demand.from_run {run}: the history holds no attempt")
    attempts, payments = len(ids), int(ids.nunique())
    return Sourced(attempts / payments, f"{run} history/*.csv: {attempts} attempts / {payments} payments")


def _valid_run(run: Path, key: str) -> dict[str, Any]:
    """summary.json of a run folder that may be used as evidence: present, and not marked invalid."""
    if not RunFolder(run).summary.is_file():
        raise MissingEvidence(f"{key} {run}: not a finished run folder (no summary.json)")
    try:
        summary = read_json_object(RunFolder(run).summary, required=True)
    except (OSError, ValueError) as exc:
        raise MissingEvidence(f"{key} {run}: summary.json unreadable: {exc}") from None
    if summary.get("valid") is not True:
        raise MissingEvidence(
            f"{key} {run}: the run is marked invalid (the load generator was the bottleneck), so it is no evidence"
        )
    return summary


def _capacity(run: str | None, per_s: float | None, replicas: int, key: str) -> Sourced:
    if per_s is not None:
        return Sourced(per_s, f"forecast file capacity.{key}.per_s ({replicas} replicas)")
    folder = Path(str(run))
    summary = _valid_run(folder, f"capacity.{key}.run")
    knee = (summary.get("capacity") or {}).get("max_rate_per_s")
    if not isinstance(knee, int | float) or knee <= 0:
        raise MissingEvidence(
            f"capacity.{key}.run {folder}: no capacity found (summary.json capacity.max_rate_per_s"
            f" = {knee!r}); is it a surge find-capacity folder?"
        )
    meta = read_json_object(RunFolder(folder).meta, required=False)
    measured = meta.get("replicas")
    if measured is not None and measured != replicas:
        raise MissingEvidence(
            f"capacity.{key}.run {folder}: measured with {measured} replicas, the forecast says {replicas}"
        )
    limited = (summary.get("capacity") or {}).get("limited_by")
    return Sourced(
        float(knee),
        f"{folder}/summary.json capacity.max_rate_per_s (surge find-capacity, {replicas} "
        f"replicas{', limited by ' + str(limited) if limited else ''})",
    )
