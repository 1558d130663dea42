"""Money invariants: pure checkers over the request history and a dump of the ledger's `repayments` table.

In the spirit of Jepsen's checkers, each idempotency key gets one outcome from what the clients saw:

    ok       some attempt got a 201: the gateway acknowledged the repayment
    failed   every attempt got an answer that guarantees nothing was recorded (400/413/415, 429, a 422 limit
             decline, a 503 shed before execution — docs/gateway.md)
    unknown  anything else: a timeout, a connection error, a 409 in flight, a 5xx. The repayment may or may not
             be in the ledger and both are correct.

and the checkers compare those outcomes with the ledger:

    lost       an acknowledged repayment is not in the ledger
    phantom    a ledger row whose key was never attempted, or whose every attempt was a definite failure
    duplicate  one key recorded twice, one key acknowledged with two repayment ids, or one payment part
               (payment_id, part) recorded under two keys: a user charged twice
    over_cap   a card's total on a business day above its channel's `card_daily_fen`, or a user's above
               `user_daily_fen` — the caps in force that day: with dynamic limits (`[[limits.schedule]]`) the
               highest cap in force at any moment of the business day, since the gateway checks each charge
               against the cap of its moment and a day's total may legitimately reach a cap lowered later

Asynchronous settlement (a 202 "accepted, processing", the final state learned later by polling or by a signed
callback; `settlement` and the columns after it in the history) adds four checks, made only for a run whose
client watched settlement (`SETTLEMENT_NAMES`). A ledger with a `status` column is read by it (`processing` /
`succeeded` / `failed`; only `succeeded` rows are money, so lost, phantom, duplicate and over_cap count settled
money only); a ledger without one holds settled money only, so a row there means succeeded and no row failed:

    stuck              an accepted payment not final when the client stopped watching it — `settle_timeout_s`
                       after the run's last arrival, plus SETTLE_GRACE_S — or one the ledger still holds as
                       `processing`
    flipped            a payment whose final state changed after the client learned it: a later poll or
                       callback said otherwise (`flipped_to`), or the ledger's final state is not the one learned
    double_settled     one accepted key settled more than once in the ledger (money moved twice)
    callback_mismatch  a callback delivered a final state the ledger disagrees with

An accepted payment counts as ok for lost/phantom once the client learned it succeeded, failed once it learned
the bank refused it, and unknown while it was not learned. An asynchronous gateway's ledger (the mock's) keeps
the state in a `settlements` table beside `repayments`; `reports.frames.read_ledger` gives it as `status`.

Against a target profile (docs/targets.md, `foreign=True`) the statuses are the target's own, so the outcomes come
from the classes its rules assigned: `succeeded` is ok; `declined` and `rate_limited` are failed (the rules say
the target refused); everything else is unknown — surge cannot know whether a foreign 503 ran the payment. A
foreign 2xx carries the target's payment id, which its ledger query need not return, so lost is checked by key.

An hour-long soak has a million attempts, so keys, repayment ids and payments are factorised once into integer
codes shared by history and ledger (`Evidence`), and every checker is numpy over those codes.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from runfolder.clock import SHANGHAI
from runfolder.outcomes import ACCEPTED, SETTLED_STATES

DEFINITE_FAILURE_STATUSES = (400, 413, 415, 429, 503)
LIMIT_DECLINES = ("SINGLE_LIMIT_EXCEEDED", "DAILY_LIMIT_EXCEEDED")
FOREIGN_FAILURES = ("declined", "rate_limited")
NAMES = ("lost", "phantom", "duplicate", "over_cap")
SETTLEMENT_NAMES = ("stuck", "flipped", "double_settled", "callback_mismatch")
SETTLE_GRACE_S = 1.0  # the client's watchers stop this long after run end + settle_timeout_s (docs/report.md)
SETTLED = "succeeded"
FAILED, UNKNOWN, OK, NEVER = 0, 1, 2, -1
OUTCOME_NAMES = {FAILED: "failed", UNKNOWN: "unknown", OK: "ok"}

Codes = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class InvariantReport:
    """Violations by kind (each a list of small dicts naming the evidence) and key outcomes counted."""

    violations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    other_rows: int = 0  # ledger rows of other runs (another key prefix), left out of lost/phantom/duplicate
    settlement: bool = False  # the run watched asynchronous settlement: the SETTLEMENT_NAMES checks were made
    unknown: dict[str, str] = field(default_factory=dict)  # checks the evidence could not decide, with the reason

    def names(self) -> tuple[str, ...]:
        return (*NAMES, *SETTLEMENT_NAMES) if self.settlement else NAMES

    def counts(self) -> dict[str, int]:
        return {name: len(self.violations.get(name, [])) for name in self.names()}


@dataclass(frozen=True, slots=True)
class Evidence:
    """History and ledger with keys and repayment ids as integer codes in one shared numbering.

    `best[k]` is key k's outcome (OK / UNKNOWN / FAILED, NEVER when no attempt used it).
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
        key_codes, key_names = _factorize(history["key"], ledger["idempotency_key"])
        rid_codes, rid_names = _factorize(history["repayment_id"], ledger["repayment_id"])
        h_key = key_codes[:n_history].astype(np.int64)
        best = np.full(len(key_names), NEVER, dtype=np.int8)
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
            acked=outcomes == OK,
            foreign=foreign,
        )

    def outcome_counts(self) -> dict[str, int]:
        attempted = self.best[self.best != NEVER]
        return {name: int((attempted == code).sum()) for code, name in sorted(OUTCOME_NAMES.items(), reverse=True)}


def _factorize(*columns: pd.Series) -> tuple[Codes, pd.Index]:
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
        return np.where(ok, OK, np.where(failed, FAILED, UNKNOWN)).astype(np.int8)
    status = history["status"].to_numpy()
    definite = np.isin(status, DEFINITE_FAILURE_STATUSES) | (
        (status == 422) & history["code"].isin(LIMIT_DECLINES).to_numpy()
    )
    learned = history["settlement"].to_numpy() if "settlement" in history else np.full(len(history), "")
    ok = (status == 201) | (learned == SETTLED)
    failed = definite | (learned == "failed")
    return np.where(ok, OK, np.where(failed, FAILED, UNKNOWN)).astype(np.int8)


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
    rows = np.flatnonzero((outcome == NEVER) | (outcome == FAILED))
    phantom = evidence.ledger.iloc[rows]
    return [
        {
            "key": str(key),
            "repayment_id": str(repayment_id),
            "reason": "never attempted" if seen == NEVER else "client was told it failed",
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
    payment_codes, payment_names = _factorize(history["payment_id"])
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


def _totals(rows: pd.DataFrame, columns: list[str], codebook: dict[str, tuple[Codes, pd.Index]]) -> pd.DataFrame:
    """Sum of amount_fen per combination of `columns`, via integer codes (string group-bys are slow at 1M rows);
    `codebook` keeps each column's factorisation for the next call."""
    for column in columns:
        if column not in codebook:
            codebook[column] = _factorize(rows[column])
    combined = np.zeros(len(rows), dtype=np.int64)
    for column in columns:
        codes, names = codebook[column]
        combined = combined * max(len(names), 1) + codes
    group, unique = pd.factorize(combined)
    totals = np.zeros(len(unique), dtype=np.int64)
    np.add.at(totals, group, rows["amount_fen"].to_numpy(np.int64))
    result = {}
    remaining = np.asarray(unique, dtype=np.int64)
    for column in reversed(columns):
        names = codebook[column][1]
        radix = max(len(names), 1)
        result[column] = names[remaining % radix]
        remaining = remaining // radix
    return pd.DataFrame({**{column: result[column] for column in columns}, "amount_fen": totals})


@dataclass(frozen=True, slots=True)
class DailyTotals:
    """Amount recorded per card and per user per business day: what the caps bound (and the daily-cap view reads)."""

    per_card: pd.DataFrame  # card_id, channel, business_date, amount_fen
    per_user: pd.DataFrame  # user_id, business_date, amount_fen


def daily_totals(rows: pd.DataFrame) -> DailyTotals:
    """`rows`: recorded repayments with card_id, channel, user_id, business_date, amount_fen (the ledger, or the
    acknowledged attempts when there is none)."""
    codebook: dict[str, tuple[Codes, pd.Index]] = {}
    return DailyTotals(
        per_card=_totals(rows, ["card_id", "channel", "business_date"], codebook),
        per_user=_totals(rows, ["user_id", "business_date"], codebook),
    )


@dataclass(frozen=True, slots=True)
class CapOverride:
    """One `[[limits.schedule]]` entry of the gateway config: daily caps in force in [start, end)."""

    start: datetime
    end: datetime
    card_daily_fen: int | None = None
    user_daily_fen: int | None = None

    @classmethod
    def from_config(cls, entry: dict[str, Any]) -> CapOverride:
        card, user = entry.get("card_daily_fen"), entry.get("user_daily_fen")
        return cls(
            start=datetime.fromisoformat(str(entry["from"])),
            end=datetime.fromisoformat(str(entry["until"])),
            card_daily_fen=None if card is None else int(card),
            user_daily_fen=None if user is None else int(user),
        )


Schedule = Sequence[CapOverride]


def cap_on_day(day: str, base: int, schedule: Schedule, scope: str) -> int:
    """The highest `scope` ("card" or "user") cap in force at any moment of business day `day` (Asia/Shanghai):
    the day is cut at every override boundary inside it, and in each piece the last override covering it wins
    (as in the gateway), else the configured `base`."""
    start = datetime.combine(date.fromisoformat(day), time(0), SHANGHAI)
    end = start + timedelta(days=1)
    cuts = sorted({start, end} | {edge for o in schedule for edge in (o.start, o.end) if start < edge < end})
    highest = 0
    for piece_start, piece_end in itertools.pairwise(cuts):
        value = base
        for override in schedule:
            scheduled = override.card_daily_fen if scope == "card" else override.user_daily_fen
            if scheduled is not None and override.start <= piece_start and piece_end <= override.end:
                value = scheduled
        highest = max(highest, value)
    return highest


def card_caps_on_days(
    channels: pd.Series, days: pd.Series, card_caps: dict[str, int], schedule: Schedule = ()
) -> npt.NDArray[np.float64]:
    """The card cap in force per (channel, business day) row; NaN where the channel's cap is unknown."""
    if not schedule:
        return np.asarray(channels.map(card_caps).to_numpy(np.float64, na_value=np.nan), dtype=np.float64)
    pairs = pd.DataFrame({"channel": channels.to_numpy(), "business_date": days.to_numpy()})
    unique = pairs.drop_duplicates()
    unique = unique.assign(
        cap=[
            float(cap_on_day(str(day), card_caps[str(code)], schedule, "card")) if str(code) in card_caps else np.nan
            for code, day in zip(unique["channel"], unique["business_date"], strict=True)
        ]
    )
    return pairs.merge(unique, how="left", on=["channel", "business_date"])["cap"].to_numpy(np.float64)


def find_over_cap(
    totals: DailyTotals, card_caps: dict[str, int], user_cap: int | None, schedule: Schedule = ()
) -> list[dict[str, Any]]:
    """Business days on which a card or a user was charged more than the cap in force that day."""
    per_card = totals.per_card.assign(
        cap=card_caps_on_days(totals.per_card["channel"], totals.per_card["business_date"], card_caps, schedule)
    )
    over = per_card[per_card["cap"].notna() & (per_card["amount_fen"] > per_card["cap"])]
    found = [
        {"scope": "card", "id": str(card), "business_date": str(day), "total_fen": int(total), "cap_fen": int(cap)}
        for card, day, total, cap in zip(
            over["card_id"], over["business_date"], over["amount_fen"], over["cap"], strict=True
        )
    ]
    if user_cap is not None:
        per_user = totals.per_user
        day_caps = {day: cap_on_day(str(day), user_cap, schedule, "user") for day in per_user["business_date"].unique()}
        caps = per_user["business_date"].map(day_caps).astype("int64")
        over_user = per_user.assign(cap=caps)[per_user["amount_fen"] > caps]
        found += [
            {"scope": "user", "id": str(user), "business_date": str(day), "total_fen": int(total), "cap_fen": int(cap)}
            for user, day, total, cap in zip(
                over_user["user_id"], over_user["business_date"], over_user["amount_fen"], over_user["cap"], strict=True
            )
        ]
    return found


def own_rows(ledger: pd.DataFrame, key_prefix: str | None) -> pd.DataFrame:
    """The ledger rows this run wrote: those whose idempotency key starts with the run's `key_prefix` (meta.json).

    Several runs (or a team's other traffic) may write to one ledger; their rows are no phantom of this run. A
    run folder without a prefix (written before it existed) is checked against the whole ledger, as then.
    """
    if not key_prefix:
        return ledger
    return ledger[ledger["idempotency_key"].astype("str").str.startswith(key_prefix)]


def check(
    history: pd.DataFrame,
    ledger: pd.DataFrame,
    card_caps: dict[str, int],
    user_cap: int | None,
    totals: DailyTotals | None = None,
    key_prefix: str | None = None,
    schedule: Schedule = (),
    *,
    foreign: bool = False,
    settle_watched: bool = False,
) -> InvariantReport:
    """Run every checker over one history and one ledger dump (`totals`: the ledger's, when already computed;
    `schedule`: the gateway's dynamic limits, when it had any; `foreign`: the history was recorded against a
    target profile, module docstring; `settle_watched`: the run's client watched settlement, so the settlement
    checks are made even when nothing was accepted).

    lost, phantom and duplicate look at the run's own rows (`own_rows`); over_cap at the whole ledger, because
    a cap bounds every charge of a card's day, whoever made it.
    """
    own = own_rows(ledger, key_prefix)
    money = settled_money(own)
    evidence = Evidence.of(history, money, foreign=foreign)
    violations = {
        "lost": find_lost(evidence),
        "phantom": find_phantom(evidence),
        "duplicate": find_duplicates(evidence),
        "over_cap": find_over_cap(totals or daily_totals(settled_money(ledger)), card_caps, user_cap, schedule),
    }
    unknown: dict[str, str] = {}
    watched = settle_watched or bool(watched_rows(history).any())
    if watched:
        found, unknown = check_settlement(history, own)
        violations.update(found)
    return InvariantReport(
        violations=violations,
        outcomes=evidence.outcome_counts(),
        other_rows=len(ledger) - len(own),
        settlement=watched,
        unknown=unknown,
    )


def watched_rows(history: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """The attempts of asynchronous payments the client watched: a 202, or an answer that carried the final
    state at once (the same key again after settlement: 200 with the status document) — `settlement` is set."""
    if "settlement" not in history:
        return np.zeros(len(history), dtype=bool)
    learned = history["settlement"].isin([*SETTLED_STATES, "processing", UNWATCHED_STATE])
    return ((history["status"] == ACCEPTED) | learned).to_numpy(bool)


def settled_money(ledger: pd.DataFrame) -> pd.DataFrame:
    """The rows that moved money: all of them, unless the ledger has a `status` column (async settlement)."""
    if "status" not in ledger:
        return ledger
    return ledger[(ledger["status"] == SETTLED).to_numpy(bool)]


UNWATCHED_STATE = "unwatched"  # `settlement` of an accepted payment the client had no room to watch
UNWATCHED = "accepted payments the client did not watch (its pending set was full) and a ledger without status"


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
