"""A study's comparison (CONTRACT §8): study.json and the self-contained study.html, from the variants' run folders.

Gather first, render second (Locust's html.py way): `variant_row` reads one finished run folder into the row of
study.json, `write_study` ranks the rows and writes both files. It is called after every variant, so a study
stopped half-way still leaves a true page of the variants that finished.

Questions and their best variant, among the valid variants only (an invalid run measured the load generator,
not the remedy, so it is marked and never ranked):

    most bills completed         completed_ratio, highest
    most money repaid            amount_repaid_fen, highest
    fewest rejections            (429 + 503) share of the attempts sent, lowest
    fastest answers              p99_ms (intended), lowest
    quickest recovery            max_recovery_s, lowest (only when some variant had an incident)

`completed_ratio` is the share of the scenario's bills (its arrivals) fully repaid by the end of the run, plan
parts and other-card payments included: the amounts recorded in the ledger (else acknowledged) under each
bill's payment id, against the bill's amount (its first attempt's).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from reports import metrics
from reports.frames import RunFrames, load_run
from reports.render import environment, plotly_bundle, script_json
from reports.runfolder import RunFolderError, write_json

VERDICTS = {0: "pass", 1: "fail"}  # any other exit code: unknown (the run itself did not measure the gateway)
FIELDS = (
    "name",
    "run_dir",
    "exit_code",
    "valid",
    "payments",
    "completed_ratio",
    "amount_repaid_fen",
    "success_ratio",
    "declined",
    "rate_limited",
    "shed",
    "error",
    "timeout",
    "p99_ms",
    "max_recovery_s",
    "invariants",
)
EXTRAS = (  # what the page shows besides CONTRACT §8's fields
    "problem",
    "completed",
    "attempts",
    "declines_by_scope",
    "rejected_share",
    "rate_limited_share",
    "shed_share",
    "plans_followed",
    "verdict",
    "curves",
)


def completed_bills(frames: RunFrames) -> int:
    """Bills whose recorded parts (any card, any day of the run) add up to at least the bill's amount."""
    history = frames.history
    if history.empty:
        return 0
    firsts = history[history["part"] == 0].sort_values(["intended", "attempt"]).drop_duplicates("payment_id")
    bills = firsts.set_index("payment_id")["amount_fen"].astype("int64")
    keys = history.drop_duplicates("key").set_index("key")["payment_id"]
    if frames.ledger is not None:
        paid_rows = frames.ledger[["idempotency_key", "amount_fen"]].rename(columns={"idempotency_key": "key"})
    else:
        acked = history[history["status"] == 201].drop_duplicates("key")
        paid_rows = acked[["key", "amount_fen"]]
    paid_rows = paid_rows.assign(payment_id=paid_rows["key"].map(keys)).dropna(subset=["payment_id"])
    paid = paid_rows.groupby("payment_id")["amount_fen"].sum()
    repaid = paid.reindex(bills.index, fill_value=0).astype("int64")
    return int((repaid >= bills).sum())


def variant_row(name: str, run_dir: Path, exit_code: int, problem: str = "") -> dict[str, Any]:
    """One variant's line of study.json (CONTRACT §8 fields first), plus what the page shows; a variant whose
    run folder could not be read is a row with its exit code, invalid, and the reason."""
    row: dict[str, Any] = dict.fromkeys(FIELDS + EXTRAS)
    row.update(
        name=name,
        run_dir=str(run_dir),
        exit_code=exit_code,
        valid=False,
        problem=problem,
        verdict=VERDICTS.get(exit_code, "unknown"),
        curves={"t_s": [], "succeeded": [], "rejected": []},
    )
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        row["problem"] = problem or "the run did not finish (no summary.json)"
        return row
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    try:
        frames = load_run(run_dir)
    except RunFolderError as exc:
        row["problem"] = f"the run folder cannot be read: {exc}"
        return row
    totals = summary.get("totals") or {}
    payments = int(totals.get("offered") or 0)
    attempts = len(frames.history) or int(totals.get("sent") or 0)  # every HTTP attempt, retries included
    completed = completed_bills(frames)
    scopes = _declines_by_scope(frames)
    recoveries = [r.get("recover_s") for r in summary.get("recovery") or [] if r.get("recover_s") is not None]
    row.update(
        valid=bool(summary.get("valid")) and exit_code in VERDICTS,
        payments=payments,
        completed=completed,
        completed_ratio=_ratio(completed, payments),
        amount_repaid_fen=int(summary.get("amount_repaid_fen") or 0),
        success_ratio=summary.get("success_ratio"),
        declined=int(totals.get("declined") or 0),
        rate_limited=int(totals.get("rate_limited") or 0),
        shed=int(totals.get("shed") or 0),
        error=int(totals.get("error") or 0),
        timeout=int(totals.get("timeout") or 0),
        p99_ms=((summary.get("latency_ms") or {}).get("intended") or {}).get("p99_ms"),
        max_recovery_s=max(recoveries) if recoveries else None,
        invariants=summary.get("invariants"),
        attempts=attempts,
        declines_by_scope=scopes,
        rejected_share=_ratio(int(totals.get("rate_limited") or 0) + int(totals.get("shed") or 0), attempts),
        rate_limited_share=_ratio(int(totals.get("rate_limited") or 0), attempts),
        shed_share=_ratio(int(totals.get("shed") or 0), attempts),
        plans_followed=summary.get("plans_followed"),
        verdict=VERDICTS.get(exit_code, "unknown"),
        curves=_curves(run_dir),
    )
    return row


def _declines_by_scope(frames: RunFrames) -> dict[str, int]:
    per_card = metrics.charges_per_day(frames).per_card
    table = metrics.declines_by_scope(frames, per_card)
    return {scope: int(table[scope].sum()) if scope in table else 0 for scope in ("single", "card", "user")}


def _curves(run_dir: Path) -> dict[str, list[float]]:
    """Per second: repayments succeeded, and rejections (429 + 503), from the run's timeseries.csv."""
    path = run_dir / "timeseries.csv"
    if not path.exists():
        return {"t_s": [], "succeeded": [], "rejected": []}
    frame = pd.read_csv(path)
    return {
        "t_s": [int(t) for t in frame["t_s"]],
        "succeeded": [int(v) for v in frame["succeeded"]],
        "rejected": [int(v) for v in frame["rate_limited"] + frame["shed"]],
    }


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


QUESTIONS: tuple[tuple[str, str, str, Callable[[float, float], bool]], ...] = (
    ("completed_ratio", "Most bills completed", "completed ratio", lambda a, b: a > b),
    ("amount_repaid_fen", "Most money repaid", "amount repaid", lambda a, b: a > b),
    ("rejected_share", "Fewest rejections (429 + 503)", "rejected share", lambda a, b: a < b),
    ("p99_ms", "Fastest answers", "p99", lambda a, b: a < b),
    ("max_recovery_s", "Quickest recovery", "worst recovery", lambda a, b: a < b),
)


def best_per_question(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each question, the valid variants with the best value (all of them on a tie); questions no valid
    variant has a value for are left out."""
    answers = []
    for key, question, label, better in QUESTIONS:
        values = [(row["name"], row[key]) for row in rows if row.get("valid") and _number(row.get(key))]
        if not values:
            continue
        best = values[0][1]
        for _, value in values[1:]:
            if better(value, best):
                best = value
        names = [name for name, value in values if math.isclose(value, best, rel_tol=1e-9, abs_tol=1e-12)]
        answers.append({"key": key, "question": question, "label": label, "value": best, "names": names})
    return answers


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def study_document(study: dict[str, Any], rows: Sequence[dict[str, Any]], *, finished: bool) -> dict[str, Any]:
    """study.json: `study`, `scenario` and the variants with CONTRACT §8's fields (plus the table's extras)."""
    return {
        **study,
        "finished": finished,
        "exit_code": max((int(row["exit_code"]) for row in rows), default=0),
        "best": [{k: a[k] for k in ("key", "question", "value", "names")} for a in best_per_question(rows)],
        "variants": [{k: v for k, v in row.items() if k != "curves"} for row in rows],
    }


def write_study(out: Path, study: dict[str, Any], rows: Sequence[dict[str, Any]], *, finished: bool) -> None:
    """study.json and study.html into `out`, both replaced atomically."""
    write_json(out / "study.json", study_document(study, rows, finished=finished))
    page = render_study(study, rows, finished=finished)
    scratch = out / "study.html.tmp"
    scratch.write_text(page, encoding="utf-8")
    scratch.replace(out / "study.html")


def render_study(study: dict[str, Any], rows: Sequence[dict[str, Any]], *, finished: bool) -> str:
    charts = _charts(rows)
    best = best_per_question(rows)
    highlight = {(answer["key"], name) for answer in best for name in answer["names"]}
    return (
        environment()
        .get_template("study.html.j2")
        .render(
            study=study,
            rows=rows,
            best=best,
            highlight=highlight,
            finished=finished,
            exit_code=max((int(row["exit_code"]) for row in rows), default=0),
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
    completed = [row for row in rows if _number(row.get("completed_ratio"))]
    if completed:
        charts.append(
            {
                "id": "completed",
                "data": [
                    {
                        "type": "bar",
                        "name": "bills completed",
                        "x": [html.escape(str(row["name"])) for row in completed],
                        "y": [round(100 * float(row["completed_ratio"]), 2) for row in completed],
                        "marker": {"color": ["#1a7f37" if row.get("valid") else "#9a6700" for row in completed]},
                    }
                ],
                "layout": {
                    "title": {"text": "Bills fully repaid by the end (%)"},
                    "xaxis": {"type": "category"},
                    "yaxis": {"title": {"text": "% of bills"}, "range": [0, 100]},
                    "margin": {"l": 60, "r": 20, "t": 50, "b": 80},
                    "height": 360,
                },
            }
        )
    return charts
