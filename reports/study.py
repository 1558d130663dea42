"""A study's comparison (docs/study.md): study.json and the self-contained study.html, from the variants' run folders.

Gather first, render second (Locust's html.py way): `variant_row` reads one finished run folder into a run's
row, `variant_rows` folds a variant's repetitions (`surge study --repeat N`, each with its own seed) into the
variant's row — the median run's figure and the range over the runs — and `write_study` ranks the rows and
writes both files. It is called after every run, so a study stopped half-way still leaves a true page of the
runs that finished.

Questions and their leading variant, among the valid variants only (an invalid run measured the load generator
or the scenario's user pool, not the remedy, so it is marked and never ranked):

    most bills completed         completed_ratio, highest
    most money repaid            amount_repaid_fen, highest
    fewest rejections            (429 + 503) share of the attempts sent, lowest
    fastest answers              p99_ms (intended), lowest
    quickest recovery            max_recovery_s, lowest (only when some variant had an incident)
    quickest settlement          settle_p99_s (time to final state of accepted payments), lowest (only when
                                 the scenario's client watched asynchronous settlement)

`completed_ratio` is the share of the scenario's bills (its arrivals) fully repaid by the end of the run, plan
parts and other-card payments included: the amounts recorded in the ledger (else acknowledged) under each
bill's payment id, against the bill's amount (its first attempt's).

The noise test: the leader is named the winner only when every one of its runs beats every run of the
runner-up — their ranges over the repetitions do not overlap. Two variants that really are the same produce
such a split by luck with a chance of 2 / C(2N, N) (N runs each: 1 in 10 at N = 3, 1 in 35 at N = 4); one
run each gives no measure of the noise at all, so a single-run study names no winner.
"""

from __future__ import annotations

import html
import json
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from reports.frames import RunFrames, load_run
from reports.measure import caps
from reports.render.shared import environment, plotly_bundle, script_json
from runfolder.layout import RunFolderError, write_json
from runfolder.verdict import State, format_value, run_state, verdicts_of, worst

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
# not in docs/study.md's fields, so an extra: the p99 time to final state of an async run (None otherwise)
SETTLE_KEY = "settle_p99_s"
EXTRAS = (  # what the page shows besides docs/study.md's fields
    SETTLE_KEY,
    "problem",
    "completed",
    "attempts",
    "declines_by_scope",
    "rejected_share",
    "rate_limited_share",
    "shed_share",
    "plans_followed",
    "verdict",
    "failed_checks",
    "repetition",
    "seed",
    "curves",
)
SPREAD = (  # the figures a variant's row gives as a range over its runs (`spread`), besides the median run's
    "completed_ratio",
    "amount_repaid_fen",
    "success_ratio",
    "rejected_share",
    "rate_limited_share",
    "shed_share",
    "p99_ms",
    "max_recovery_s",
    SETTLE_KEY,
)
MEDIAN = (  # the counts a variant's row gives as its median run's
    "payments",
    "completed",
    "attempts",
    "declined",
    "rate_limited",
    "shed",
    "error",
    "timeout",
    "plans_followed",
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


def variant_row(
    name: str, run_dir: Path, exit_code: int, problem: str = "", *, repetition: int = 1, seed: int | None = None
) -> dict[str, Any]:
    """One run of a variant (study.json's fields first), plus what the page shows; a run whose folder could not
    be read is a row with its exit code, invalid, and the reason."""
    row: dict[str, Any] = dict.fromkeys(FIELDS + EXTRAS)
    row.update(
        name=name,
        run_dir=str(run_dir),
        exit_code=exit_code,
        valid=False,
        problem=problem,
        verdict=run_state(exit_code),
        failed_checks=[],
        repetition=repetition,
        seed=seed,
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
        valid=bool(summary.get("valid")) and run_state(exit_code) is not State.UNKNOWN,
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
        settle_p99_s=((summary.get("settlement") or {}).get("time_to_final_s") or {}).get("p99"),
        invariants=summary.get("invariants"),
        attempts=attempts,
        declines_by_scope=scopes,
        rejected_share=_ratio(int(totals.get("rate_limited") or 0) + int(totals.get("shed") or 0), attempts),
        rate_limited_share=_ratio(int(totals.get("rate_limited") or 0), attempts),
        shed_share=_ratio(int(totals.get("shed") or 0), attempts),
        plans_followed=summary.get("plans_followed"),
        verdict=run_state(exit_code),
        failed_checks=_failed_checks(summary),
        curves=_curves(run_dir),
    )
    if not row["valid"] and not problem:
        row["problem"] = str(
            summary.get("invalid_because") or f"exit code {exit_code}: the run did not measure the gateway"
        )
    return row


def _failed_checks(summary: dict[str, Any]) -> list[str]:
    """Each failed SLO, invariant or run check in words, e.g. "success_ratio 0.8234 (bound 0.95)"."""
    failed = [verdict for verdict in verdicts_of(summary) if verdict.state is State.FAIL]
    return [f"{v.name} {format_value(v.value, v.unit)} (bound {format_value(v.bound, v.unit)})" for v in failed]


def variant_rows(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs folded per variant, in the order variants first ran: each figure the median run's (the lower
    middle one for an even count, so always a figure some run had), `spread` its [min, max] over the runs that
    have it, `runs` the runs themselves; valid only when every run was, `exit_code` the worst run's."""
    names = list(dict.fromkeys(str(run["name"]) for run in runs))
    return [_fold([run for run in runs if run["name"] == name]) for name in names]


def _fold(runs: list[dict[str, Any]]) -> dict[str, Any]:
    first = runs[0]
    row = {key: first.get(key) for key in FIELDS + EXTRAS if key not in ("repetition", "seed")}
    row["exit_code"] = max(int(run["exit_code"]) for run in runs)
    row["valid"] = all(run.get("valid") for run in runs)
    row["verdict"] = worst(State(run.get("verdict") or State.UNKNOWN) for run in runs)
    problems = [f"run {run['repetition']}: {run['problem']}" for run in runs if run.get("problem")]
    row["problem"] = "; ".join(problems) if len(runs) > 1 else first.get("problem") or ""
    row["failed_checks"] = sorted({check for run in runs for check in run.get("failed_checks") or []})
    spread: dict[str, list[float] | None] = {}
    for key in (*SPREAD, *MEDIAN):
        values = [run[key] for run in runs if _number(run.get(key))]
        row[key] = statistics.median_low(values) if values else None
        if key in SPREAD:
            spread[key] = [min(values), max(values)] if values else None
    row["spread"] = spread
    scopes = [run["declines_by_scope"] for run in runs if run.get("declines_by_scope")]
    row["declines_by_scope"] = (
        {scope: statistics.median_low([s[scope] for s in scopes]) for scope in scopes[0]} if scopes else None
    )
    counted = [run["invariants"] for run in runs if run.get("invariants")]
    row["invariants"] = (
        {k: max((w.get(k) for w in counted if w.get(k) is not None), default=None) for k in counted[0]}
        if counted
        else None
    )
    row["runs"] = [{k: v for k, v in run.items() if k != "curves"} for run in runs]
    row["curves"] = next((run["curves"] for run in runs if run.get("curves") and run["curves"]["t_s"]), first["curves"])
    return row


def _declines_by_scope(frames: RunFrames) -> dict[str, int]:
    per_card = caps.charges_per_day(frames).per_card
    table = caps.declines_by_scope(frames, per_card)
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
    return round(part / whole, 6) if whole else None


QUESTIONS: tuple[tuple[str, str, str, Callable[[float, float], bool]], ...] = (
    ("completed_ratio", "Most bills completed", "completed ratio", lambda a, b: a > b),
    ("amount_repaid_fen", "Most money repaid", "amount repaid", lambda a, b: a > b),
    ("rejected_share", "Fewest rejections (429 + 503)", "rejected share", lambda a, b: a < b),
    ("p99_ms", "Fastest answers", "p99", lambda a, b: a < b),
    ("max_recovery_s", "Quickest recovery", "worst recovery", lambda a, b: a < b),
    (SETTLE_KEY, "Quickest settlement (async)", "settle p99", lambda a, b: a < b),
)


NOISE_TEST = "non-overlapping ranges: every run of the winner beats every run of the runner-up"


def best_per_question(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each question, the leading valid variants by their median run (all of them on a tie) and whether
    the lead is clear of the noise (module docstring: `clear`, with `runner_up` and `why` when it is not);
    questions no valid variant has a value for are left out."""
    answers = []
    for key, question, label, better in QUESTIONS:
        values = [(row, row[key]) for row in rows if row.get("valid") and _number(row.get(key))]
        if not values:
            continue
        best = values[0][1]
        for _, value in values[1:]:
            if better(value, best):
                best = value
        leaders = [row for row, value in values if _same(value, best)]
        others = [(row, value) for row, value in values if not _same(value, best)]
        runner_up = None
        for row, value in others:
            if runner_up is None or better(value, runner_up[1]):
                runner_up = (row, value)
        clear, why = _clear_lead(key, leaders, runner_up, better)
        answers.append(
            {
                "key": key,
                "question": question,
                "label": label,
                "value": best,
                "names": [row["name"] for row in leaders],
                "clear": clear,
                "runner_up": None if runner_up is None else runner_up[0]["name"],
                "why": why,
            }
        )
    return answers


def _clear_lead(
    key: str,
    leaders: list[dict[str, Any]],
    runner_up: tuple[dict[str, Any], float] | None,
    better: Callable[[float, float], bool],
) -> tuple[bool, str]:
    """Whether the leader beats the runner-up by more than the noise (NOISE_TEST), and if not, why not."""
    if len(leaders) > 1:
        return False, "tied: " + ", ".join(str(row["name"]) for row in leaders)
    if runner_up is None:
        return False, "no other valid variant to compare with"
    leader, (other, _) = leaders[0], runner_up
    runs = min(len(leader.get("runs") or [leader]), len(other.get("runs") or [other]))
    if runs < 2:
        return False, "one run each: no measure of the noise (use --repeat 3 or more)"
    mine, theirs = (leader.get("spread") or {}).get(key), (other.get("spread") or {}).get(key)
    if not mine or not theirs:
        return False, "no range to compare"
    worst_mine = mine[0] if better(mine[1], mine[0]) else mine[1]  # the leader's worst run
    best_theirs = theirs[1] if better(theirs[1], theirs[0]) else theirs[0]  # the runner-up's best run
    if better(worst_mine, best_theirs):
        return True, ""
    return False, f"its range overlaps {other['name']}'s over {runs} runs each"


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def passing(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The variants whose every run passed every check (and was valid)."""
    return [str(row["name"]) for row in rows if row.get("valid") and row.get("verdict") == State.PASS]


def study_document(study: dict[str, Any], rows: Sequence[dict[str, Any]], *, finished: bool) -> dict[str, Any]:
    """study.json: `study`, `scenario` and the variants (docs/study.md lists every key)."""
    return {
        **study,
        "finished": finished,
        "exit_code": max((int(row["exit_code"]) for row in rows), default=0),
        "noise_test": NOISE_TEST,
        "passing": passing(rows),
        "best": [
            {k: a[k] for k in ("key", "question", "value", "names", "clear", "runner_up", "why")}
            for a in best_per_question(rows)
        ],
        "variants": [{k: v for k, v in row.items() if k != "curves"} for row in rows],
    }


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
