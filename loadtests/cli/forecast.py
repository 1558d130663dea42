"""`surge forecast FORECAST.toml [--out DIR] [--emit-scenario FILE]`: does this year's demand fit? (docs/forecast.md)

The file and its gateway config are validated first (exit 2); then `orchestration.forecast_evidence` reads the
evidence it names into sourced figures (exit 3 when missing or invalid), `reports/forecast/` writes
forecast.json and forecast.html, and the command exits 0 when the forecast fits at N−1 at p90, 1 when it does not
(the first breaking hour on the console and in the GitHub step summary).
"""

from __future__ import annotations

import argparse
import math
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

from loadtests.cli.args import positive_float
from loadtests.errors import MissingEvidence, UsageError
from loadtests.scenario.forecast import ForecastFile, load_forecast
from mock_gateway.config import GatewayConfig
from mock_gateway.config_sources import load_config
from mock_gateway.errors import ConfigError
from runfolder.claim import claim_new
from runfolder.layout import RunFolder, read_json_object

if TYPE_CHECKING:
    from reports.forecast.inputs import ForecastInputs

REHEARSAL_S = 120.0  # the emitted scenario replays the worst hour in two minutes unless --rehearsal-s says


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
    _check_channel_shares(forecast, [channel.code for channel in config.channels])
    # the file and its config held: only now the evidence and the arithmetic load (pandas, plotly)
    from loadtests.cli.github_summary import publish_forecast
    from loadtests.orchestration.forecast_evidence import read_inputs
    from reports.forecast.page import write_forecast

    inputs = read_inputs(forecast, config, caps_source)
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


def _check_channel_shares(forecast: ForecastFile, codes: list[str]) -> None:
    """A calendar day's channel shares name channels of the gateway whose caps the forecast uses."""
    for day in sorted(forecast.demand.days, key=lambda d: d.date):
        unknown = sorted(set(day.channel_shares) - set(codes))
        if unknown:
            raise UsageError(
                f"demand.days {day.date}: channel_shares names {', '.join(unknown)}, not a channel of the "
                f"gateway ({', '.join(codes)})"
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
        slo = read_json_object(RunFolder(Path(forecast.capacity.n_minus_1.run)).meta, required=False).get("slo") or {}
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
