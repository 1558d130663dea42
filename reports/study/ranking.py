"""A study's variants folded over their repetitions and ranked per question, with the noise test; study.json.

Questions and their leading variant, among the valid variants only (an invalid run measured the load generator
or the scenario's user pool, not the remedy, so it is never ranked): most bills completed (completed_ratio),
most money repaid (amount_repaid_fen), fewest rejections ((429 + 503) share of the attempts sent), fastest
answers (p99_ms, intended), quickest recovery (max_recovery_s, when some variant had an incident), quickest
settlement (settle_p99_s, when the client watched asynchronous settlement).

The noise test: the leader is named the winner only when every one of its runs beats every run of the
runner-up — their ranges over the repetitions do not overlap. Two variants that really are the same produce
such a split by luck with a chance of 2 / C(2N, N) (N runs each: 1 in 10 at N = 3, 1 in 35 at N = 4); one
run each gives no measure of the noise at all, so a single-run study names no winner.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from reports.study.rows import EXTRAS, FIELDS, SETTLE_KEY, is_number
from runfolder.verdict import State, worst, worst_exit

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


def variant_rows(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs folded per variant, in the order variants first ran: each figure the median run's (the lower
    middle one for an even count, so always a figure some run had), `spread` its [min, max] over the runs that
    have it, `runs` the runs themselves; valid only when every run was, `exit_code` the worst run's."""
    names = list(dict.fromkeys(str(run["name"]) for run in runs))
    return [_fold([run for run in runs if run["name"] == name]) for name in names]


def _fold(runs: list[dict[str, Any]]) -> dict[str, Any]:
    first = runs[0]
    row = {key: first.get(key) for key in FIELDS + EXTRAS if key not in ("repetition", "seed")}
    row["exit_code"] = worst_exit(int(run["exit_code"]) for run in runs)
    row["valid"] = all(run.get("valid") for run in runs)
    row["verdict"] = worst(State(run.get("verdict") or State.UNKNOWN) for run in runs)
    problems = [f"run {run['repetition']}: {run['problem']}" for run in runs if run.get("problem")]
    row["problem"] = "; ".join(problems) if len(runs) > 1 else first.get("problem") or ""
    row["failed_checks"] = sorted({check for run in runs for check in run.get("failed_checks") or []})
    spread: dict[str, list[float] | None] = {}
    for key in (*SPREAD, *MEDIAN):
        values = [run[key] for run in runs if is_number(run.get(key))]
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
        values = [(row, row[key]) for row in rows if row.get("valid") and is_number(row.get(key))]
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


def passing(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The variants whose every run passed every check (and was valid)."""
    return [str(row["name"]) for row in rows if row.get("valid") and row.get("verdict") == State.PASS]


def study_document(study: dict[str, Any], rows: Sequence[dict[str, Any]], *, finished: bool) -> dict[str, Any]:
    """study.json: `study`, `scenario` and the variants (docs/study.md lists every key)."""
    return {
        **study,
        "finished": finished,
        "exit_code": worst_exit(int(row["exit_code"]) for row in rows),
        "noise_test": NOISE_TEST,
        "passing": passing(rows),
        "best": [
            {k: a[k] for k in ("key", "question", "value", "names", "clear", "runner_up", "why")}
            for a in best_per_question(rows)
        ],
        "variants": [{k: v for k, v in row.items() if k != "curves"} for row in rows],
    }
