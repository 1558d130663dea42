"""lost, phantom and duplicate: the money in the ledger against what the clients were told.

    lost       an acknowledged repayment is not in the ledger (by repayment id when the 201 gave one, else by
               key; a foreign 2xx carries the target's payment id, which its ledger query need not return)
    phantom    a ledger row whose key was never attempted, or whose every attempt was a definite failure
    duplicate  one key recorded twice, one key acknowledged with two repayment ids, or one payment part
               (payment_id, part) recorded under two keys: a user charged twice

Each is numpy over the integer codes of `evidence.Evidence`: no Python loop over the attempts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from reports.invariants.evidence import Codes, Evidence, KeyOutcome, factorize


def find_lost(evidence: Evidence) -> list[dict[str, Any]]:
    """Acknowledged repayments the ledger does not hold (by repayment id when the 201 gave one, else by key)."""
    history = evidence.history
    acked = _first_per_key(evidence.h_key, np.flatnonzero(evidence.acked))
    rid_in_ledger = np.zeros(len(evidence.rid_names), dtype=bool)
    rid_in_ledger[evidence.l_rid] = True
    key_in_ledger = np.zeros(len(evidence.key_names), dtype=bool)
    key_in_ledger[evidence.l_key] = True
    has_id = (history["repayment_id"] != "").to_numpy(bool)[acked] & (not evidence.foreign)
    missing = np.where(has_id, ~rid_in_ledger[evidence.h_rid[acked]], ~key_in_ledger[evidence.h_key[acked]])
    lost = history.iloc[acked[missing]]
    return [
        {"key": str(key), "repayment_id": str(repayment_id), "amount_fen": int(amount)}
        for key, repayment_id, amount in zip(lost["key"], lost["repayment_id"], lost["amount_fen"], strict=True)
    ]


def _first_per_key(keys: Codes, rows: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    """The first of `rows` for each distinct key among them, in O(n): reversed writes leave the first standing."""
    first = np.full(int(keys.max()) + 1 if keys.size else 0, -1, dtype=np.int64)
    first[keys[rows][::-1]] = rows[::-1]
    return np.sort(first[first >= 0])


def find_phantom(evidence: Evidence) -> list[dict[str, Any]]:
    """Ledger rows nobody asked for, or that every answer to the client said could not exist."""
    outcome = evidence.best[evidence.l_key]
    rows = np.flatnonzero((outcome == KeyOutcome.NEVER) | (outcome == KeyOutcome.FAILED))
    phantom = evidence.ledger.iloc[rows]
    return [
        {
            "key": str(key),
            "repayment_id": str(repayment_id),
            "reason": "never attempted" if seen == KeyOutcome.NEVER else "client was told it failed",
        }
        for key, repayment_id, seen in zip(
            phantom["idempotency_key"], phantom["repayment_id"], outcome[rows], strict=True
        )
    ]


def find_duplicates(evidence: Evidence) -> list[dict[str, Any]]:
    """Every way one payment can be recorded or acknowledged twice."""
    names = evidence.key_names
    found: list[dict[str, Any]] = []
    rows_per_key = np.bincount(evidence.l_key, minlength=len(names))
    found += [
        {"kind": "key recorded twice", "key": str(names[int(key)]), "rows": int(rows_per_key[key])}
        for key in np.flatnonzero(rows_per_key > 1)
    ]
    history = evidence.history
    acked = evidence.acked & (history["repayment_id"] != "").to_numpy(bool)
    keys, rids = evidence.h_key[acked], evidence.h_rid[acked]
    some_rid = np.full(len(names), -1, dtype=np.int64)
    some_rid[keys] = rids
    flagged = np.isin(keys, keys[rids != some_rid[keys]])
    ids_per_key = pd.Series(rids[flagged]).groupby(keys[flagged]).nunique()
    found += [
        {"kind": "key acknowledged with two ids", "key": str(names[int(key)]), "rows": int(n)}
        for key, n in zip(ids_per_key.index, ids_per_key.to_numpy(), strict=True)
    ]
    found += _parts_recorded_twice(evidence)
    return found


def _parts_recorded_twice(evidence: Evidence) -> list[dict[str, Any]]:
    """One payment part (payment_id, part) whose ledger rows carry more than one key: a double charge."""
    history = evidence.history
    payment_codes, payment_names = factorize(history["payment_id"])
    part_of_key = np.full(len(evidence.key_names), -1, dtype=np.int64)
    payment_of_key = np.full(len(evidence.key_names), -1, dtype=np.int64)
    payment_of_key[evidence.h_key] = payment_codes
    part_of_key[evidence.h_key] = history["part"].to_numpy(np.int64)
    in_ledger = np.zeros(len(evidence.key_names), dtype=bool)
    in_ledger[evidence.l_key] = True
    recorded = np.flatnonzero(in_ledger & (payment_of_key >= 0))
    parts = int(part_of_key.max()) + 1 if part_of_key.size else 1
    slot = payment_of_key[recorded] * parts + part_of_key[recorded]
    keys_per_slot = np.bincount(slot, minlength=len(payment_names) * parts)
    return [
        {
            "kind": "payment part recorded under two keys",
            "payment_id": str(payment_names[int(slot_id) // parts]),
            "part": int(slot_id) % parts,
            "rows": int(keys_per_slot[slot_id]),
        }
        for slot_id in np.flatnonzero(keys_per_slot > 1)
    ]
