"""`surge forecast FORECAST.toml [--out DIR] [--emit-scenario FILE]`: does this year's demand fit? (docs/forecast.md)

Reads the evidence the forecast file names — a trace or a bills-due calendar, a rehearsal run folder for the
attempts per payment, find-capacity run folders for N and N−1 replicas, a gateway config for the caps — into
sourced figures, hands them to `reports/forecast.py`, writes forecast.json and forecast.html, and exits 0 when the
forecast fits at N−1 at p90, 1 when it does not (the first breaking hour on the console and in the GitHub step
summary), 2 on a bad file or argument, 3 when the evidence is missing or invalid: a capacity run marked invalid,
or measured with another number of replicas than the file says, is no evidence.
"""

from __future__ import annotations

import argparse
import math
import os
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tomli_w

from loadtests.cli.args import positive_float
from loadtests.cli.github_summary import publish_forecast
from loadtests.errors import SurgeError, UsageError
from loadtests.scenario.forecast import ForecastFile, load_forecast
from loadtests.scenario.trace import SHANGHAI, Trace, TraceError, read_trace, window_of
from mock_gateway.config import ConfigError, GatewayConfig, load_config
from reports.forecast import ChannelLimits, ForecastInputs, Lognormal, Sourced, write_forecast
from runfolder.claim import claim_new
from runfolder.layout import read_json_object

REHEARSAL_S = 120.0  # the emitted scenario replays the worst hour in two minutes unless --rehearsal-s says


class MissingEvidence(SurgeError):
    """Evidence the forecast needs is missing or invalid (exit 3): nothing is forecast from it."""

    exit_code = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("forecast", type=Path, help="the forecast TOML file (docs/forecast.md)")
    parser.add_argument(
        "--out", type=Path, help="where forecast.json and forecast.html go (default runs/<UTC timestamp>-forecast)"
    )
    parser.add_argument(
        "--emit-scenario",
        type=Path,
        metavar="FILE",
        help="write the worst hour as a scenario to rehearse (compressed to --rehearsal-s)",
    )
    parser.add_argument(
        "--rehearsal-s",
        type=positive_float,
        default=REHEARSAL_S,
        metavar="S",
        help="length of the emitted scenario in seconds (default 120: the hour compressed 30x)",
    )


def run(args: argparse.Namespace) -> int:
    forecast = load_forecast(args.forecast)
    config, caps_source = _gateway(forecast)
    inputs = _inputs(forecast, config, caps_source)
    out = args.out or claim_new(Path("runs"), f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-forecast")
    document = write_forecast(Path(out), inputs)
    if args.emit_scenario is not None:
        _emit_scenario(args.emit_scenario, forecast, document, inputs, args.rehearsal_s)
    _print(document, Path(out), args.emit_scenario)
    publish_forecast(document, Path(out))
    return 0 if document["fits"] else 1


def _gateway(forecast: ForecastFile) -> tuple[GatewayConfig, str]:
    """The caps' config, read as the gateway reads it but without SURGE_* variables: a forecast must not depend on
    the shell it runs in."""
    path = forecast.limits.config
    if path is None:
        return load_config(None, env={}), "gateway defaults (mock_gateway/config.py; no [limits] config)"
    if not Path(path).is_file():
        raise MissingEvidence(f"limits.config {path}: no such file")
    try:
        return load_config(Path(path), env={}), f"gateway config {path}"
    except ConfigError as exc:
        raise UsageError(f"limits.config {path}: {exc}") from None


def _inputs(forecast: ForecastFile, config: GatewayConfig, caps_source: str) -> ForecastInputs:
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
    records: list[dict[str, Any]] = []
    bills: dict[date, Lognormal] = {}
    for day in sorted(forecast.demand.days, key=lambda d: d.date):
        unknown = sorted(set(day.channel_shares) - set(codes))
        if unknown:
            raise UsageError(
                f"demand.days {day.date}: channel_shares names {', '.join(unknown)}, not a channel of the "
                f"gateway ({', '.join(codes)})"
            )
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
    files = sorted((run / "history").glob("*.csv"))
    if not files:
        raise MissingEvidence(f"demand.from_run {run}: no history/*.csv")
    ids = pd.concat([pd.read_csv(f, usecols=["payment_id"], dtype=str) for f in files])["payment_id"]
    if ids.empty:
        raise MissingEvidence(f"demand.from_run {run}: the history holds no attempt")
    attempts, payments = len(ids), int(ids.nunique())
    return Sourced(attempts / payments, f"{run} history/*.csv: {attempts} attempts / {payments} payments")


def _valid_run(run: Path, key: str) -> dict[str, Any]:
    """summary.json of a run folder that may be used as evidence: present, and not marked invalid."""
    if not (run / "summary.json").is_file():
        raise MissingEvidence(f"{key} {run}: not a finished run folder (no summary.json)")
    try:
        summary = read_json_object(run / "summary.json", required=True)
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
    meta = read_json_object(folder / "meta.json", required=False)
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


def _worst_hour(document: dict[str, Any]) -> dict[str, Any]:
    return max(document["hours"], key=lambda row: row["utilisation_p90_n_minus_1"] or 0.0)


def _emit_scenario(
    path: Path, forecast: ForecastFile, document: dict[str, Any], inputs: ForecastInputs, duration_s: float
) -> None:
    """The worst hour as a scenario to rehearse: at its p90 arrival rate per second, in `duration_s`. A trace hour
    is replayed compressed (3600 / duration_s, 30× for 120 s) and thinned to growth p90 / compress, so each run
    second carries what a real second of the hour would at p90 growth; a calendar hour becomes a flat rate. The
    SLOs are the N−1 capacity run's. The pool covers 8 s of arrivals: room for retries that wait out 429s."""
    worst = _worst_hour(document)
    start = datetime.fromisoformat(worst["hour"])
    compress = 3600 / duration_s
    slo: dict[str, Any] = {}
    if forecast.capacity.n_minus_1.run is not None:
        slo = read_json_object(Path(forecast.capacity.n_minus_1.run) / "meta.json", required=False).get("slo") or {}
    payments_per_s = worst["demand_p90_per_s"] / inputs.attempts_per_payment.value
    scenario: dict[str, Any] = {
        "name": f"{forecast.name}-worst-hour",
        "description": f"{worst['hour']} at p90 growth ({payments_per_s:.1f} payments/s), from surge forecast",
        "seed": 1,
    }
    arrivals: dict[str, Any] = {"pool": max(50, min(20000, math.ceil(payments_per_s * 8)))}
    if forecast.demand.trace is not None:
        scenario["arrivals"] = {
            "process": "trace",
            "trace": os.path.relpath(forecast.demand.trace, path.resolve().parent),
            "window": [start.isoformat(), (start + timedelta(hours=1)).isoformat()],
            "compress": compress,
            "growth": forecast.demand.growth.p90 / compress,
            **arrivals,
        }
    else:
        scenario["duration_s"] = duration_s
        day = next(d for d in forecast.demand.days if d.date == start.date())
        scenario["population"] = {"bill_fen": {"median": day.amount_fen.median, "p99": day.amount_fen.p99}}
        scenario["rate"] = [{"at_s": 0, "per_s": round(payments_per_s, 3)}]
        scenario["arrivals"] = arrivals
    if slo:
        scenario["slo"] = {k: v for k, v in slo.items() if v is not None}
    header = (
        f"# The worst hour of forecast {forecast.name!r}: {worst['hour']}, p90 demand {worst['demand_p90_per_s']:g}"
        f" attempts/s against {worst['capacity_n_minus_1_per_s']:g}/s at N-1 (utilisation "
        f"{worst['utilisation_p90_n_minus_1']:g}).\n# Rehearse it with N-1 replicas: surge run {path.name} --replicas "
        f"{forecast.capacity.n_minus_1.replicas}"
        + (f" --config {forecast.limits.config}" if forecast.limits.config else "")
        + "\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + tomli_w.dumps(scenario), encoding="utf-8")


def _print(document: dict[str, Any], out: Path, scenario: Path | None) -> None:
    name = document["name"]
    worst = _worst_hour(document)
    breaks = document["first_break"]
    if document["fits"]:
        print(
            f"surge forecast {name}: FITS at N-1 at p90 (worst hour {worst['hour']}: utilisation "
            f"{worst['utilisation_p90_n_minus_1']:.2f})"
        )
    else:
        print(
            f"surge forecast {name}: DOES NOT FIT — first breaking hour {breaks['p90_n_minus_1']} "
            "(p90 demand over capacity at N-1)"
        )
        print(f"  worst hour {worst['hour']}: utilisation {worst['utilisation_p90_n_minus_1']:.2f}")
    if breaks["p50_n"]:
        print(f"  p50 demand passes capacity with every replica up from {breaks['p50_n']}")
    refused = sum(row["payments"] for row in document["declines"])
    if refused:
        moves = sum(row["split_plan_moves"] for row in document["declines"])
        print(f"  the caps refuse {refused} payments at p90 growth ({moves} move in part to the next day)")
    best = document["levers"][0] if document["levers"] else None
    if best and best["closes_gap_share"] > 0:
        print(
            f"  best lever: {best['lever']} closes {100 * best['closes_gap_share']:.0f} % of the gap "
            f"({document['gap_payments']} payments)"
        )
    print(f"forecast: {out / 'forecast.html'}")
    if scenario is not None:
        print(f"scenario: {scenario}")
