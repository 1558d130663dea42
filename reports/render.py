"""report.html: gather the chart data first, render the template second (Locust's html.py shape).

One self-contained file that opens offline from a CI artifact. plotly.js is inlined once, gzip-compressed and
base64-encoded (about 1.9 MB instead of 4.8 MB) and unpacked by the browser's built-in `DecompressionStream`;
that is what keeps an hour-long soak with per-second series under the 5 MB budget. Chart data is plain JSON in a
`<script type="application/json">` block with `<`, `>` and `&` escaped, and every string that comes from the run
folder (scenario name and description, event details, codes, replica names) is HTML-escaped, by Jinja's
autoescape in the page and explicitly before it reaches Plotly, which would otherwise interpret tags in labels.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined
from plotly.offline import get_plotlyjs

from reports import hdr, invariants, settlement
from reports.analysis import Analysis, settlement_summary
from reports.compare import Comparison, fmt
from reports.frames import CLASSES
from reports.measure import caps, counters, latency
from reports.violations import Violation, describe, yuan
from runfolder.events import FAULT_CLEARED, FAULT_INJECTED
from runfolder.outcomes import GOOD
from runfolder.verdict import Headline as Words
from runfolder.verdict import Kind, State, worst

MARKED_EVENTS = {
    ("chaos", FAULT_INJECTED): "#d62728",
    ("chaos", FAULT_CLEARED): "#2ca02c",
    ("cluster", "fault_ended"): "#2ca02c",
    ("scenario", "spike_start"): "#ff7f0e",
    ("scenario", "spike_end"): "#bcbd22",
    ("cluster", "replica_down"): "#9467bd",
    ("cluster", "replica_up"): "#17becf",
    ("cluster", "failover"): "#8c564b",
}
MARKER_LABELS = {  # an event as a reader says it: "kill r1", not "fault_injected r1"
    ("chaos", FAULT_INJECTED): "{detail} {target}",
    ("chaos", FAULT_CLEARED): "fault cleared {target}",
    ("cluster", "fault_ended"): "fault ended {target}",
    ("scenario", "spike_start"): "spike {detail}",
    ("scenario", "spike_end"): "spike over",
    ("cluster", "replica_down"): "{target} down",
    ("cluster", "replica_up"): "{target} up",
    ("cluster", "failover"): "failover {detail}",
}
MAX_MARKERS = 60
LABEL_CHAR_PX = 6.0  # 9 px font: the width of a label, for laying labels out so that none covers another
PLOT_WIDTH_PX = 520.0  # the narrowest a chart is drawn (two charts side by side)
LABEL_ROW = 0.075  # paper height of one row of marker labels
SCOPES = ("single", "card", "user")
GROUPS = {Kind.SLO: "SLO", Kind.INVARIANT: "invariant", Kind.RUN: "run"}  # a verdict's kind as the page names it


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("reports", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["yuan"] = yuan
    env.filters["num"] = _num
    env.filters["fmt"] = fmt
    env.filters["pct"] = percent
    env.globals["words"] = Words
    env.globals["groups"] = GROUPS
    return env


@cache
def plotly_bundle() -> str:
    """plotly.js, gzip + base64: computed once per process, it is the same for every report."""
    return base64.b64encode(gzip.compress(get_plotlyjs().encode("utf-8"), compresslevel=6, mtime=0)).decode("ascii")


def percent(ratio: float | None, digits: int = 1) -> str:
    """A share as percent with `digits` decimals; a share that is not zero never reads as zero (one 503 in ten
    thousand attempts is "<0.1 %", not "0.0 %"), nor one short of everything as all of it (">99.9 %")."""
    if ratio is None or math.isnan(ratio):
        return "—"
    step = 10.0**-digits
    shown = round(ratio * 100, digits)
    if ratio > 0 and shown < step:
        return f"<{step:.{digits}f} %"
    if ratio < 1 and shown >= 100:
        return f">{100 - step:.{digits}f} %"
    return f"{shown:,.{digits}f} %"


def _num(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def render_report(analysis: Analysis, comparison: Comparison | None = None) -> str:
    charts = build_charts(analysis)
    return (
        environment()
        .get_template("report.html.j2")
        .render(
            a=analysis,
            meta=analysis.frames.meta,
            verdicts=analysis.verdicts,
            passed=analysis.exit_code == 0,
            facts=_facts(analysis),
            headline=headline(analysis),
            config_rows=_flatten(analysis.frames.meta.gateway_config or {}),
            generator={} if analysis.frames.generator is None else analysis.frames.generator.model_dump(),
            charts={chart["id"]: chart for chart in charts},
            chart_json=script_json([{k: chart[k] for k in ("id", "data", "layout")} for chart in charts]),
            plotly_gz=plotly_bundle(),
            recovery=analysis.recovery,
            capacity=analysis.capacity,
            plans_followed=counters.plans_followed(analysis.frames),
            repaid=caps.repaid_per_day(analysis.frames),
            locust_report=_locust_report(analysis),
            comparison=comparison,
            invariant_outcomes=None if analysis.invariants is None else analysis.invariants.outcomes,
            cap_days=_cap_days(analysis),
            violations=_violations(analysis),
            settlement=settlement_summary(analysis),
        )
    )


def _violations(analysis: Analysis) -> tuple[list[Violation], int]:
    """The invariant violations the report names (the first `violations.SHOWN`) and how many more there are."""
    report, frames = analysis.invariants, analysis.frames
    if report is None or frames.ledger is None or not any(report.counts().values()):
        return [], 0
    return describe(report.violations, frames.history, invariants.own_rows(frames.ledger, frames.meta.key_prefix))


def _cap_days(analysis: Analysis) -> list[dict[str, Any]]:
    """The caps in force per business day of the run, shown only when the gateway had dynamic limits (else the
    configured caps, listed with the config, held every day)."""
    meta = analysis.frames.meta
    if not caps.cap_schedule(meta):
        return []
    days = set(analysis.daily.per_card["business_date"].astype(str)) | set(
        analysis.daily.per_user["business_date"].astype(str)
    )
    return caps.caps_by_day(meta, sorted(days))


def render_comparison(comparison: Comparison) -> str:
    """The standalone page `surge compare` writes: the same table as the report's comparison section."""
    return environment().get_template("compare.html.j2").render(comparison=comparison)


@dataclass(frozen=True, slots=True)
class Headline:
    """One figure of the strip above the verdict table; `state` (pass / fail / unknown / "") colours it."""

    key: str
    label: str
    value: str
    state: str = ""


TOP_CODES = 3


def headline(analysis: Analysis) -> list[Headline]:
    """The answer at a glance (issue 17): how much load came, how much got through, what was refused and why,
    how slow, how fast the worst recovery, whether the money held — before any table or chart."""
    windows = analysis.frames.windows
    good = counters.class_sum(windows, GOOD)
    completed = int(counters.class_sum(windows, CLASSES).sum())
    codes = counters.codes_share(analysis.frames.codes)
    top = list(codes.items())[:TOP_CODES]
    shares = [f"{code} {percent(count / completed)}" for code, count in top] if completed else []
    if len(codes) > TOP_CODES:
        shares.append(f"{len(codes) - TOP_CODES} more")
    p99 = latency.latency_summary(analysis.overall_intended)["p99_ms"]
    p99_state = "".join(verdict.state for verdict in analysis.of(Kind.SLO) if verdict.name == "p99_ms")
    return [
        Headline("offered", "peak offered", f"{_peak(windows['offered'])}/s"),
        Headline("goodput", "peak goodput", f"{_peak(good)}/s"),
        Headline("rejected", "declined or refused, by code", ", ".join(shares) or "none"),
        Headline("p99", "p99 (intended time)", "—" if p99 is None else f"{p99:,.0f} ms", p99_state),
        _worst_recovery(analysis),
        _invariants_headline(analysis),
    ]


def _peak(series: pd.Series) -> str:
    return f"{int(series.max()):,}" if not series.empty else "0"


def _worst_recovery(analysis: Analysis) -> Headline:
    """The slowest recovery measured, coloured by the recovery verdicts (the worst of them)."""
    played = [entry for entry in analysis.recovery if entry.get("played", True)]
    unplayed = len(analysis.recovery) - len(played)
    note = f" ({unplayed} not played)" if unplayed else ""
    state = worst(verdict.state for verdict in analysis.of(Kind.SLO) if verdict.name.startswith("recovery_s["))
    if analysis.not_started:
        return Headline("recovery", "worst recovery", "unknown (not started)", State.UNKNOWN)
    if not analysis.recovery:
        return Headline("recovery", "worst recovery", "no faults or spikes")
    if not played:
        return Headline("recovery", "worst recovery", f"unknown{note}", state)
    if any(entry["recover_s"] is None for entry in played):
        return Headline("recovery", "worst recovery", f"not recovered{note}", state)
    slowest = max(float(entry["recover_s"]) for entry in played)
    return Headline("recovery", "worst recovery", f"{slowest:.1f} s{note}", state)


def _invariants_headline(analysis: Analysis) -> Headline:
    verdicts = analysis.of(Kind.INVARIANT)
    outcomes = [verdict.state for verdict in verdicts]
    failed = [verdict.name for verdict in verdicts if verdict.state is State.FAIL]
    if failed:
        return Headline("invariants", "money invariants", f"FAILED: {', '.join(failed)}", "fail")
    unknown = outcomes.count(State.UNKNOWN)
    if unknown == len(outcomes):
        return Headline("invariants", "money invariants", "unknown (not checked)", "unknown")
    if unknown:
        return Headline(
            "invariants", "money invariants", f"{len(outcomes) - unknown} held, {unknown} unknown", "unknown"
        )
    return Headline("invariants", "money invariants", f"all {len(outcomes)} held", "pass")


def _stopped_fact(analysis: Analysis) -> str | None:
    stop = analysis.frames.stop
    if stop is None:
        return None
    if analysis.not_started:
        return f"not started: {stop.reason} before the first arrival"
    return f"at t = {stop.at_s:.1f} s by {stop.by}: {stop.reason}"


def _facts(analysis: Analysis) -> list[tuple[str, Any]]:
    meta = analysis.frames.meta
    started = meta.started_unix
    started_text = datetime.fromtimestamp(float(started), tz=UTC).isoformat(timespec="seconds") if started else None
    versions = meta.versions
    return [
        ("scenario", meta.scenario),
        ("description", meta.description),
        ("seed", meta.seed),
        ("scale", meta.scale),
        ("duration", f"{meta.duration_s} s planned, {len(analysis.frames.windows)} s recorded"),
        ("stopped", _stopped_fact(analysis)),
        ("started (UTC)", started_text),
        ("host", meta.host),
        ("target profile", None if meta.target is None else meta.target.name),
        ("embedded cluster", meta.embedded),
        ("workers", meta.workers),
        ("client policy", meta.client_policy),
        ("git commit", meta.git_commit),
        ("versions", ", ".join(f"{name} {version}" for name, version in versions.items()) or None),
        ("amount repaid", yuan(int(analysis.frames.windows["amount_fen"].sum()))),
        ("success ratio", fmt(counters.success_ratio(analysis.frames.windows), "")),
    ]


def _flatten(config: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """The gateway config as `section.key = value` rows; anything named like a secret is left out."""
    rows: list[tuple[str, str]] = []
    for key, value in config.items():
        path = f"{prefix}{key}"
        if "token" in str(key).lower() or "secret" in str(key).lower():
            continue
        if isinstance(value, dict):
            rows += _flatten(value, f"{path}.")
        elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            for number, item in enumerate(value):
                label = item.get("code") or item.get("name") or str(number)
                rows += _flatten(item, f"{path}[{label}].")
        else:
            rows.append((path, json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value))
    return rows


def _locust_report(analysis: Analysis) -> str | None:
    folder = analysis.frames.run_dir / "locust"
    pages = sorted(folder.glob("*.html")) if folder.is_dir() else []
    return f"locust/{pages[0].name}" if pages else None


def script_json(data: Any) -> str:
    """JSON safe inside a <script> element: no `</script>`, no `<!--`, whatever the strings hold."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _values(series: pd.Series, digits: int = 3) -> list[float | int | None]:
    array = series.to_numpy(dtype=float)
    rounded = np.round(array, digits)
    if np.all(np.isfinite(rounded)) and np.all(rounded == np.round(rounded)):
        return [int(v) for v in rounded]
    return [None if not math.isfinite(v) else float(v) for v in rounded]


def _line(name: str, series: pd.Series, **extra: Any) -> dict[str, Any]:
    return {
        "type": "scatter",
        "mode": "lines",
        "name": html.escape(name),
        "x0": 0,
        "dx": 1,
        "y": _values(series),
        **extra,
    }


def _layout(title: str, y_title: str, **extra: Any) -> dict[str, Any]:
    """Every chart: the legend shown even for one series (a reader must see *what* a lone bar counts), the title
    on the left and a top margin tall enough that Plotly's mode bar (top right) never covers it."""
    return {
        "title": {"text": title, "x": 0, "xanchor": "left", "y": 0.98, "yanchor": "top"},
        "xaxis": {"title": {"text": "seconds since start"}},
        "yaxis": {"title": {"text": y_title}},
        "margin": {"l": 60, "r": 20, "t": 64, "b": 50},
        "legend": {"orientation": "h", "y": -0.2},
        "showlegend": True,
        "height": 380,
        **extra,
    }


def _markers(analysis: Analysis) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Vertical lines and labels for faults, spikes and the router's reactions, from events.csv.

    One marker per (kind, target, time) — the cluster logs `fault_ended` once per replica of an `all` fault —
    and labels laid out in rows (`label_rows`) so that two events a second apart (double11's spike and kill)
    are both readable.
    """
    events = analysis.frames.events
    span = max(len(analysis.frames.windows), 1)
    events = events[(events["t_s"] >= 0) & (events["t_s"] <= span)]
    seen: set[tuple[str, str, float]] = set()
    marked: list[tuple[float, str, str]] = []
    targets = events["target"].fillna("").astype(str)
    details = events["detail"].fillna("").astype(str)
    for t_s, source, kind, target, detail in zip(
        events["t_s"].astype(float),
        events["source"].astype(str),
        events["kind"].astype(str),
        targets,
        details,
        strict=True,
    ):
        color = MARKED_EVENTS.get((source, kind))
        key = (kind, target, round(t_s, 1))
        if color is None or key in seen or len(marked) >= MAX_MARKERS:
            continue
        seen.add(key)
        label = MARKER_LABELS[source, kind].format(target=target, detail=detail.replace("->", "→") or kind)
        marked.append((t_s, " ".join(label.split()), color))
    widths = [len(label) * LABEL_CHAR_PX / PLOT_WIDTH_PX * span for _, label, _ in marked]
    rows = label_rows([t for t, _, _ in marked], widths)
    shapes = [
        {
            "type": "line",
            "xref": "x",
            "yref": "paper",
            "x0": t,
            "x1": t,
            "y0": 0,
            "y1": 1,
            "line": {"color": color, "dash": "dot", "width": 1},
        }
        for t, _, color in marked
    ]
    annotations = [
        {
            "x": t,
            "xref": "x",
            "y": 1 - row * LABEL_ROW,
            "yref": "paper",
            "text": html.escape(label),
            "showarrow": False,
            "xanchor": "left",
            "yanchor": "top",
            "bgcolor": "rgba(255,255,255,0.8)",
            "font": {"size": 9, "color": color},
        }
        for (t, label, color), row in zip(marked, rows, strict=True)
    ]
    return shapes, annotations


def label_rows(starts: list[float], widths: list[float]) -> list[int]:
    """A row for each label (drawn from `start`, `width` long, in x units) so that no two in one row overlap:
    each label takes the lowest row whose last label ends before it starts (greedy interval colouring)."""
    ends: list[float] = []  # per row, where its last label ends
    rows = [0] * len(starts)
    for index in sorted(range(len(starts)), key=lambda i: starts[i]):
        start, width = starts[index], widths[index]
        row = next((number for number, end in enumerate(ends) if end <= start), len(ends))
        if row == len(ends):
            ends.append(start + width)
        else:
            ends[row] = start + width
        rows[index] = row
    return rows


def log_ticks(values: list[float]) -> dict[str, Any]:
    """Ticks at 1-2-5 steps across the data's range, so a log axis reads 10, 20, 50, 100 … instead of bare
    exponents or unlabelled minor ticks."""
    finite = [value for value in values if value is not None and math.isfinite(value) and value > 0]
    if not finite:
        return {}
    low = math.floor(math.log10(min(finite)))
    high = math.ceil(math.log10(max(finite)))
    ticks = [step * 10.0**exponent for exponent in range(low, high + 1) for step in (1, 2, 5)]
    return {"tickvals": ticks, "ticktext": [f"{tick:g}" for tick in ticks]}


def build_charts(analysis: Analysis) -> list[dict[str, Any]]:
    """Every chart that has data; a section whose chart is absent says so in words instead."""
    shapes, annotations = _markers(analysis)
    marks = {"shapes": shapes, "annotations": annotations}
    charts = [_throughput(analysis, marks), _rejections(analysis, marks)]
    charts += [_latency(analysis, kind, marks) for kind in ("intended", "service")]
    charts += [_hdr_curve(analysis), _replicas(analysis), _declines(analysis), _repaid(analysis)]
    charts += [_knee(analysis), _knee_p99(analysis)]
    charts += [_settle_backlog(analysis, marks), _settle_latency(analysis, marks)]
    return [chart for chart in charts if chart is not None]


def _settle_seconds(analysis: Analysis) -> tuple[pd.DataFrame, int, float]:
    """The accepted payments, and the seconds to draw: the run's, and the watchers' tail after it."""
    frames = analysis.frames
    accepted = settlement.accepted_payments(frames.history)
    started = float(frames.meta.started_unix)
    last = float(accepted["final_at"].max()) if not accepted.empty else 0.0
    return accepted, max(len(frames.windows), int(last - started) + 1), started


def _settle_backlog(analysis: Analysis, marks: dict[str, Any]) -> dict[str, Any] | None:
    """Accepted and not yet known final at the end of each second, per channel (the client's view)."""
    accepted, seconds, started = _settle_seconds(analysis)
    if accepted.empty:
        return None
    backlog = settlement.backlog(accepted, started, seconds)
    data = [_line(str(channel), backlog[channel]) for channel in backlog.columns]
    return _chart("settle_backlog", data, _layout("Settlement backlog per channel", "payments pending", **marks))


def _settle_latency(analysis: Analysis, marks: dict[str, Any]) -> dict[str, Any] | None:
    """p50 / p99 time to final state of the payments learned final in each second."""
    accepted, seconds, started = _settle_seconds(analysis)
    per_second = settlement.settle_latency_per_second(accepted, started, seconds)
    if per_second["p99_s"].isna().all():
        return None
    data = [_line("p50", per_second["p50_s"]), _line("p99", per_second["p99_s"])]
    return _chart("settle_latency", data, _layout("Time to final state (from the intended send)", "s", **marks))


def _chart(chart_id: str, data: list[dict[str, Any]], layout: dict[str, Any]) -> dict[str, Any] | None:
    return {"id": chart_id, "data": data, "layout": layout} if data else None


def _throughput(analysis: Analysis, marks: dict[str, Any]) -> dict[str, Any] | None:
    frame = counters.throughput(analysis.frames.windows)
    data = [
        _line(f"arrivals {column}", frame[column], line={"dash": "dot"})
        if column in ("offered", "sent")
        else _line(f"attempts {column}", frame[column])
        for column in frame.columns
    ]
    title = "Arrivals (dotted) and attempts per second"
    return _chart("throughput", data, _layout(title, "per second", **marks))


def _rejections(analysis: Analysis, marks: dict[str, Any]) -> dict[str, Any] | None:
    codes = analysis.frames.codes
    ordered = list(counters.codes_share(codes))
    data = [{"type": "bar", "name": html.escape(code), "x0": 0, "dx": 1, "y": _values(codes[code])} for code in ordered]
    return _chart(
        "rejections", data, _layout("Responses by problem code", "responses / s", barmode="stack", bargap=0, **marks)
    )


def _latency(analysis: Analysis, kind: str, marks: dict[str, Any]) -> dict[str, Any] | None:
    frame = analysis.latency_intended if kind == "intended" else analysis.latency_service
    if frame["max_ms"].isna().all():
        return None
    highest = frame["max_ms"]
    data = [  # a percentile never above the second's max (one HDR bucket apart at most); max dashed, on top
        _line(column.replace("_ms", ""), frame[column].clip(upper=highest), connectgaps=False)
        for column in frame.columns
        if column != "max_ms"
    ]
    data.append(_line("max", highest, connectgaps=False, line={"dash": "dash", "width": 1}))
    title = "Intended-time latency (done − intended)" if kind == "intended" else "Service time (done − sent)"
    values = [float(v) for v in frame.to_numpy().ravel() if math.isfinite(v)]
    yaxis = {"type": "log", "title": {"text": "ms (log)"}, **log_ticks(values)}
    return _chart(f"latency_{kind}", data, _layout(title, "ms (log)", yaxis=yaxis, **marks))


def _hdr_curve(analysis: Analysis) -> dict[str, Any] | None:
    data = []
    every: list[float] = []
    for name, counts in (("intended", analysis.overall_intended), ("service", analysis.overall_service)):
        pct, values = hdr.percentile_curve(counts)
        every += [float(v) for v in values]
        x = [round(100.0 / max(100.0 - p, 1e-4), 3) for p in pct]
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "line": {"shape": "hv"},
                "name": name,
                "x": x,
                "y": [round(v, 3) for v in values],
            }
        )
    data = [trace for trace in data if trace["x"]]
    ticks = [1, 2, 10, 100, 1000, 10000, 100000]
    labels = ["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
    yaxis = {"type": "log", "title": {"text": "ms (log)"}, **log_ticks(every)}
    layout = _layout("Latency by percentile (HDR)", "ms (log)", yaxis=yaxis)
    layout["xaxis"] = {"type": "log", "tickvals": ticks, "ticktext": labels, "title": {"text": "percentile"}}
    return _chart("hdr", data, layout)


def _replicas(analysis: Analysis) -> dict[str, Any] | None:
    """Shares up to the last second that had responses: after the load stops there is no share to draw."""
    replicas = analysis.frames.replicas
    served = np.flatnonzero(replicas.sum(axis=1).to_numpy() > 0) if not replicas.empty else np.array([])
    if served.size == 0:
        return None
    share = counters.replica_share(replicas.iloc[: int(served[-1]) + 1]) * 100.0
    data = [_line(str(name), share[name], stackgroup="one") for name in share.columns]
    return _chart(
        "replicas",
        data,
        _layout(
            "Traffic share per replica",
            "% of responses",
            yaxis={"range": [0, 100], "title": {"text": "% of responses"}},
        ),
    )


def _declines(analysis: Analysis) -> dict[str, Any] | None:
    table = caps.declines_by_scope(analysis.frames, analysis.daily.per_card)
    if table.empty:
        return None
    days = [html.escape(str(day)) for day in table.index]
    data = [
        {"type": "bar", "name": scope, "x": days, "y": [int(v) for v in table[scope]]}
        for scope in SCOPES
        if int(table[scope].sum()) > 0
    ]
    layout = _layout("Limit declines by scope and business day", "payments declined", barmode="stack")
    layout["xaxis"] = {"type": "category", "title": {"text": "business day"}}
    return _chart("declines", data, layout)


def _repaid(analysis: Analysis) -> dict[str, Any] | None:
    table = caps.repaid_per_day(analysis.frames)
    if table.empty:
        return None
    data = [
        {
            "type": "bar",
            "name": "repaid",
            "x": [html.escape(str(day)) for day in table.index],
            "y": [int(v) // 100 for v in table["amount_fen"]],
            "text": [yuan(int(v)) for v in table["amount_fen"]],
            "textposition": "auto",
        }
    ]
    layout = _layout("Amount repaid per business day", "yuan")
    layout["xaxis"] = {"type": "category", "title": {"text": "business day"}}
    return _chart("repaid", data, layout)


def _knee(analysis: Analysis) -> dict[str, Any] | None:
    steps = analysis.frames.steps
    if steps.empty:
        return None
    colors = ["#2ca02c" if passed else "#d62728" for passed in steps["passed"]]
    top = float(max(steps["offered"].max(), steps["goodput"].max()))
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "goodput",
            "x": _values(steps["offered"]),
            "y": _values(steps["goodput"]),
            "marker": {"color": colors, "size": 9},
        },
        {
            "type": "scatter",
            "mode": "lines",
            "name": "goodput = offered",
            "x": [0, top],
            "y": [0, top],
            "line": {"dash": "dot", "color": "#999"},
        },
    ]
    layout = _layout("Offered load versus goodput per probe (the knee; green: met the SLOs)", "goodput / s")
    layout["xaxis"] = {"title": {"text": "offered / s"}}
    return _chart("knee", data, layout)


def _knee_p99(analysis: Analysis) -> dict[str, Any] | None:
    steps = analysis.frames.steps
    if steps.empty:
        return None
    colors = ["#2ca02c" if passed else "#d62728" for passed in steps["passed"]]
    data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "p99",
            "x": _values(steps["offered"]),
            "y": _values(steps["p99_ms"]),
            "marker": {"color": colors, "size": 9},
        }
    ]
    layout = _layout("p99 latency per probe (green: met the SLOs)", "p99 ms")
    layout["xaxis"] = {"title": {"text": "offered / s"}}
    layout["shapes"] = [
        {
            "type": "line",
            "xref": "paper",
            "x0": 0,
            "x1": 1,
            "yref": "y",
            "y0": analysis.slo.max_p99_ms,
            "y1": analysis.slo.max_p99_ms,
            "line": {"dash": "dot", "color": "#d62728"},
        }
    ]
    return _chart("knee_p99", data, layout)
