"""The checks of asynchronous settlement, made only for a run whose client watched it.

A 202 says "accepted, processing"; the final state is learned later by polling or by a signed callback
(`settlement` and the columns after it in the history). An accepted payment's money is checked by `money` once
its state is learned (`evidence`); these four check the settling itself:

    stuck              an accepted payment not final when the client stopped watching it — `settle_timeout_s`
                       after the run's last arrival, plus a grace of 1 s — or one the ledger still holds as
                       `processing`
    flipped            a payment whose final state changed after the client learned it: a later poll or
                       callback said otherwise (`flipped_to`), or the ledger's final state is not the one learned
    double_settled     one accepted key settled more than once in the ledger (money moved twice)
    callback_mismatch  a callback delivered a final state the ledger disagrees with

A ledger without a `status` column holds settled money only: a row there means succeeded, no row failed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from reports.invariants.evidence import SETTLED, UNWATCHED_STATE
from runfolder.outcomes import ACCEPTED, SETTLED_STATES

SETTLEMENT_NAMES = ("stuck", "flipped", "double_settled", "callback_mismatch")
UNWATCHED = "accepted payments the client did not watch (its pending set was full) and a ledger without status"


def watched_rows(history: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """The attempts of asynchronous payments the client watched: a 202, or an answer that carried the final
    state at once (the same key again after settlement: 200 with the status document) — `settlement` is set."""
    if "settlement" not in history:
        return np.zeros(len(history), dtype=bool)
    learned = history["settlement"].isin([*SETTLED_STATES, "processing", UNWATCHED_STATE])
    return ((history["status"] == ACCEPTED) | learned).to_numpy(bool)


def check_settlement(
    history: pd.DataFrame, ledger: pd.DataFrame
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    """stuck, flipped, double_settled and callback_mismatch (module docstring) over the accepted attempts of the
    history and the run's own ledger rows; the second value names the checks the evidence cannot decide."""
    accepted = history[watched_rows(history)]
    accepted = accepted.sort_values("final_at", ascending=False, kind="stable").drop_duplicates("key")
    has_status = "status" in ledger
    keys = ledger["idempotency_key"].astype("str")
    states = ledger["status"].astype("str") if has_status else pd.Series(SETTLED, index=ledger.index)
    settled_rows = keys[(states == SETTLED).to_numpy(bool)].value_counts()
    pending_keys = set(keys[(states == "processing").to_numpy(bool)]) if has_status else set()
    final_in_ledger = {
        str(key): str(state) for key, state in zip(keys, states, strict=True) if str(state) in SETTLED_STATES
    }  # a key with both a succeeded and a failed row: succeeded wins (money moved)
    for key in settled_rows.index:
        final_in_ledger[str(key)] = SETTLED
    found: dict[str, list[dict[str, Any]]] = {name: [] for name in SETTLEMENT_NAMES}
    for row in accepted.itertuples(index=False):
        key, learned = str(row.key), str(row.settlement)
        in_ledger = final_in_ledger.get(key, "" if has_status else "failed")
        base = {"key": key, "payment_id": str(row.payment_id), "amount_fen": int(str(row.amount_fen))}
        not_learned = learned not in SETTLED_STATES and learned != UNWATCHED_STATE
        if not_learned or key in pending_keys:
            found["stuck"].append({**base, "learned": learned or "processing", "ledger": in_ledger or "processing"})
        if learned in SETTLED_STATES and (row.flipped_to or (in_ledger and in_ledger != learned)):
            found["flipped"].append({**base, "learned": learned, "then": str(row.flipped_to or in_ledger)})
        if settled_rows.get(key, 0) > 1:
            found["double_settled"].append({**base, "settled_rows": int(settled_rows[key])})
        delivered = str(row.callback_status)
        if delivered in SETTLED_STATES and in_ledger and delivered != in_ledger:
            found["callback_mismatch"].append({**base, "delivered": delivered, "ledger": in_ledger})
    unknown = {}
    if not has_status and (accepted["settlement"] == UNWATCHED_STATE).any():
        unknown["stuck"] = UNWATCHED
    return found, unknown
