"""One run of a study's variant, read from its finished run folder into the row study.json and the page show.

`completed_ratio` is the share of the scenario's bills (its arrivals) fully repaid by the end of the run, plan
parts and other-card payments included: the amounts recorded in the ledger (else acknowledged) under each
bill's payment id, against the bill's amount (its first attempt's). A run whose folder cannot be read is still a
row — its exit code, invalid, and the reason — so a study never hides a variant that went wrong.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from reports.frames import RunFrames, load_run
from reports.measure import caps
from runfolder.layout import RunFolder, RunFolderError
from runfolder.verdict import State, format_value, run_state, verdicts_of

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
    summary_path = RunFolder(run_dir).summary
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


def _declines_by_scope(frames: RunFrames) -> dict[str, int]:
    per_card = caps.charges_per_day(frames).per_card
    table = caps.declines_by_scope(frames, per_card)
    return {scope: int(table[scope].sum()) if scope in table else 0 for scope in ("single", "card", "user")}


def _curves(run_dir: Path) -> dict[str, list[float]]:
    """Per second: repayments succeeded, and rejections (429 + 503), from the run's timeseries.csv."""
    path = RunFolder(run_dir).timeseries
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


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
