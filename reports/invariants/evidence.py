"""Each idempotency key's outcome from what the clients saw, and history and ledger in one integer numbering.

    ok       some attempt got a 201, or the client learned the accepted payment succeeded
    failed   every attempt got an answer that guarantees nothing was recorded (400/413/415, 429, a 422 limit
             decline, a 503 shed before execution — docs/gateway.md), or the client learned the bank refused it
    unknown  anything else: a timeout, a connection error, a 409 in flight, a 5xx, a settlement not learned.
             The repayment may or may not be in the ledger and both are correct.

Against a target profile (docs/targets.md, `foreign=True`) the statuses are the target's own, so the outcomes come
from the classes its rules assigned: `succeeded` is ok; `declined` and `rate_limited` are failed; everything else
is unknown — surge cannot know whether a foreign 503 ran the payment. An hour-long soak has a million attempts,
so keys, repayment ids and payments are factorised once into integer codes shared by history and ledger
(`Evidence`), and every checker is numpy over those codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt
import pandas as pd

from runfolder.outcomes import SETTLED_STATES

DEFINITE_FAILURE_STATUSES = (400, 413, 415, 429, 503)
LIMIT_DECLINES = ("SINGLE_LIMIT_EXCEEDED", "DAILY_LIMIT_EXCEEDED")
FOREIGN_FAILURES = ("declined", "rate_limited")
SETTLED = "succeeded"
UNWATCHED_STATE = "unwatched"  # `settlement` of an accepted payment the client had no room to watch

Codes = npt.NDArray[np.int64]


class KeyOutcome(IntEnum):
    """What the clients learned of one key, ordered so that a key's outcome is the best of its attempts'."""

    NEVER = -1  # no attempt used the key
    FAILED = 0
    UNKNOWN = 1
    OK = 2


@dataclass(frozen=True, slots=True)
class Evidence:
    """History and ledger with keys and repayment ids as integer codes in one shared numbering.

    `best[k]` is key k's `KeyOutcome` (NEVER when no attempt used it).
    """

    history: pd.DataFrame
    ledger: pd.DataFrame
    key_names: pd.Index
    rid_names: pd.Index
    h_key: Codes
    l_key: Codes
    h_rid: Codes
    l_rid: Codes
    best: npt.NDArray[np.int8]
    acked: npt.NDArray[np.bool_]  # per attempt: the client was told the repayment succeeded
    foreign: bool = False

    @classmethod
    def of(cls, history: pd.DataFrame, ledger: pd.DataFrame, *, foreign: bool = False) -> Evidence:
        n_history = len(history)
        key_codes, key_names = factorize(history["key"], ledger["idempotency_key"])
        rid_codes, rid_names = factorize(history["repayment_id"], ledger["repayment_id"])
        h_key = key_codes[:n_history].astype(np.int64)
        best = np.full(len(key_names), KeyOutcome.NEVER, dtype=np.int8)
        outcomes = attempt_outcomes(history, foreign=foreign)
        np.maximum.at(best, h_key, outcomes)
        return cls(
            history=history,
            ledger=ledger,
            key_names=key_names,
            rid_names=rid_names,
            h_key=h_key,
            l_key=key_codes[n_history:].astype(np.int64),
            h_rid=rid_codes[:n_history].astype(np.int64),
            l_rid=rid_codes[n_history:].astype(np.int64),
            best=best,
            acked=outcomes == KeyOutcome.OK,
            foreign=foreign,
        )

    def outcome_counts(self) -> dict[str, int]:
        """Attempted keys per outcome: ok, unknown, failed."""
        attempted = self.best[self.best != KeyOutcome.NEVER]
        counted = (KeyOutcome.OK, KeyOutcome.UNKNOWN, KeyOutcome.FAILED)
        return {outcome.name.lower(): int((attempted == outcome).sum()) for outcome in counted}


def factorize(*columns: pd.Series) -> tuple[Codes, pd.Index]:
    """One integer numbering over several text columns (Arrow's dictionary encoding: no Python strings)."""
    joined = pd.concat([column.astype("str") for column in columns], ignore_index=True)
    codes, names = pd.factorize(joined)
    return codes.astype(np.int64), pd.Index(names)


def attempt_outcomes(history: pd.DataFrame, *, foreign: bool = False) -> npt.NDArray[np.int8]:
    """Per attempt: OK (a 201), FAILED (an answer that guarantees nothing was recorded) or UNKNOWN; against a
    target profile, by the outcome classes its rules gave (module docstring)."""
    if foreign:
        outcome = history["outcome"].to_numpy()
        settlement = history["settlement"] if "settlement" in history else pd.Series("", index=history.index)
        watched = settlement.isin([*SETTLED_STATES, "processing", UNWATCHED_STATE]).to_numpy(bool)
        settled = (settlement == SETTLED).to_numpy(bool)
        refused = (settlement == "failed").to_numpy(bool)
        ok = (~watched & (outcome == "succeeded")) | settled
        failed = (~watched & np.isin(outcome, FOREIGN_FAILURES)) | refused
        return np.where(ok, KeyOutcome.OK, np.where(failed, KeyOutcome.FAILED, KeyOutcome.UNKNOWN)).astype(np.int8)
    status = history["status"].to_numpy()
    definite = np.isin(status, DEFINITE_FAILURE_STATUSES) | (
        (status == 422) & history["code"].isin(LIMIT_DECLINES).to_numpy()
    )
    learned = history["settlement"].to_numpy() if "settlement" in history else np.full(len(history), "")
    ok = (status == 201) | (learned == SETTLED)
    failed = definite | (learned == "failed")
    return np.where(ok, KeyOutcome.OK, np.where(failed, KeyOutcome.FAILED, KeyOutcome.UNKNOWN)).astype(np.int8)


def own_rows(ledger: pd.DataFrame, key_prefix: str | None) -> pd.DataFrame:
    """The ledger rows this run wrote: those whose idempotency key starts with the run's `key_prefix` (meta.json).

    Several runs (or a team's other traffic) may write to one ledger; their rows are no phantom of this run. A
    run folder without a prefix (written before it existed) is checked against the whole ledger, as then.
    """
    if not key_prefix:
        return ledger
    return ledger[ledger["idempotency_key"].astype("str").str.startswith(key_prefix)]


def settled_money(ledger: pd.DataFrame) -> pd.DataFrame:
    """The rows that moved money: all of them, unless the ledger has a `status` column (async settlement:
    `processing` / `succeeded` / `failed`, only `succeeded` is money). An asynchronous gateway's ledger (the
    mock's) keeps the state in a `settlements` table beside `repayments`; `reports.frames.read_ledger` gives it
    as `status`."""
    if "status" not in ledger:
        return ledger
    return ledger[(ledger["status"] == SETTLED).to_numpy(bool)]
