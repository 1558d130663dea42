"""study.html, the self-contained page of a study, and the writing of both its files.

Gather first, render second (Locust's html.py way): the rows are read (`rows`) and ranked (`ranking`) before the
page is drawn from them. `write_study` is called after every run, so a study stopped half-way still leaves a
true page of the runs that finished.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reports.render.shared import environment, plotly_bundle, script_json
from reports.study.ranking import NOISE_TEST, best_per_question, passing, study_document, variant_rows
from reports.study.rows import SETTLE_KEY, is_number
from runfolder.layout import write_json
from runfolder.verdict import worst_exit


def write_study(out: Path, study: dict[str, Any], runs: Sequence[dict[str, Any]], *, finished: bool) -> None:
    """study.json and study.html into `out` from every run so far, both replaced atomically."""
    rows = variant_rows(runs)
    write_json(out / "study.json", study_document(study, rows, finished=finished))
    page = render_study(study, rows, finished=finished)
    scratch = out / "study.html.tmp"
    scratch.write_text(page, encoding="utf-8")
    scratch.replace(out / "study.html")


def render_study(study: dict[str, Any], rows: Sequence[dict[str, Any]], *, finished: bool) -> str:
    charts = _charts(rows)
    best = best_per_question(rows)
    highlight = {(answer["key"], name) for answer in best if answer["clear"] for name in answer["names"]}
    return (
        environment()
        .get_template("study.html.j2")
        .render(
            study=study,
            rows=rows,
            best=best,
            highlight=highlight,
            settles=any(row.get(SETTLE_KEY) is not None for row in rows),
            passing=passing(rows),
            noise_test=NOISE_TEST,
            repeat=max((len(row.get("runs") or [row]) for row in rows), default=1),
            finished=finished,
            exit_code=worst_exit(int(row["exit_code"]) for row in rows),
            charts={chart["id"]: chart for chart in charts},
            chart_json=script_json(charts),
            plotly_gz=plotly_bundle(),
        )
    )


def _charts(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every variant's curves overlaid on one time axis (seconds since its own t=0: the same arrivals)."""
    charts = []
    for chart_id, key, title, y_title in (
        ("throughput", "succeeded", "Repayments succeeded per second", "succeeded / s"),
        ("rejections", "rejected", "Rejections per second (429 RATE_LIMITED + 503 shed)", "rejected / s"),
    ):
        data = [
            {
                "type": "scatter",
                "mode": "lines",
                "name": html.escape(str(row["name"])) + ("" if row.get("valid") else " (invalid)"),
                "x": row["curves"]["t_s"],
                "y": row["curves"][key],
                "line": {"dash": "solid" if row.get("valid") else "dot"},
            }
            for row in rows
            if row.get("curves") and row["curves"]["t_s"]
        ]
        if data:
            layout = {
                "title": {"text": title},
                "xaxis": {"title": {"text": "seconds since start"}},
                "yaxis": {"title": {"text": y_title}},
                "margin": {"l": 60, "r": 20, "t": 80, "b": 50},
                "legend": {"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom"},  # above: clear of the axis
                "height": 380,
            }
            charts.append({"id": chart_id, "data": data, "layout": layout})
    completed = [row for row in rows if is_number(row.get("completed_ratio"))]
    bars = []
    for valid, label, style in (
        (True, "bills completed", {"color": "#1a7f37"}),
        (False, "invalid run (not ranked)", {"color": "#d0d7de", "pattern": {"shape": "/", "fgcolor": "#9a6700"}}),
    ):
        group = [row for row in completed if bool(row.get("valid")) == valid]
        if not group:
            continue
        ranges = [(row.get("spread") or {}).get("completed_ratio") or [row["completed_ratio"]] * 2 for row in group]
        bars.append(
            {
                "type": "bar",
                "name": label,
                "x": [html.escape(str(row["name"])) for row in group],
                "y": [round(100 * float(row["completed_ratio"]), 2) for row in group],
                "error_y": {  # the range over the repetitions: zero-length with one run each
                    "type": "data",
                    "symmetric": False,
                    "array": [
                        round(100 * (hi - row["completed_ratio"]), 2)
                        for row, (_, hi) in zip(group, ranges, strict=True)
                    ],
                    "arrayminus": [
                        round(100 * (row["completed_ratio"] - lo), 2)
                        for row, (lo, _) in zip(group, ranges, strict=True)
                    ],
                },
                "marker": style,
            }
        )
    if bars:
        charts.append(
            {
                "id": "completed",
                "data": bars,
                "layout": {
                    "title": {"text": "Bills fully repaid by the end (%; median run, whiskers: the range over runs)"},
                    "xaxis": {
                        "type": "category",
                        "categoryorder": "array",
                        "categoryarray": [html.escape(str(row["name"])) for row in completed],
                    },
                    "yaxis": {"title": {"text": "% of bills"}, "range": [0, 100]},
                    "barmode": "overlay",
                    "showlegend": True,
                    "legend": {"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom"},
                    "margin": {"l": 60, "r": 20, "t": 80, "b": 80},
                    "height": 380,
                },
            }
        )
    return charts
