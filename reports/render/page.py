"""report.html and the compare page: the run's facts, verdicts, tables and charts put into the templates.

Gather first, render second (Locust's html.py shape): everything the template shows is computed here or in the
modules it calls (`headline`, `charts`) from one `Analysis`, and the template only lays it out.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from reports.analysis import Analysis
from reports.compare import Comparison, fmt
from reports.invariants.evidence import own_rows
from reports.measure import caps
from reports.render.charts import build_charts
from reports.render.headline import headline
from reports.render.shared import environment, plotly_bundle, script_json
from reports.violations import Violation, describe, yuan
from runfolder.layout import RunFolder


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
            plans_followed=analysis.plans_followed,
            repaid=caps.repaid_per_day(analysis.frames),
            locust_report=_locust_report(analysis),
            comparison=comparison,
            invariant_outcomes=None if analysis.invariants is None else analysis.invariants.outcomes,
            cap_days=_cap_days(analysis),
            violations=_violations(analysis),
            settlement=analysis.settlement,
        )
    )


def _violations(analysis: Analysis) -> tuple[list[Violation], int]:
    """The invariant violations the report names (the first `violations.SHOWN`) and how many more there are."""
    report, frames = analysis.invariants, analysis.frames
    if report is None or frames.ledger is None or not any(report.counts().values()):
        return [], 0
    return describe(report.violations, frames.history, own_rows(frames.ledger, frames.meta.key_prefix))


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
        ("success ratio", fmt(analysis.success_ratio, "")),
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
    folder = RunFolder(analysis.frames.run_dir).locust
    pages = sorted(folder.glob("*.html")) if folder.is_dir() else []
    return f"locust/{pages[0].name}" if pages else None
