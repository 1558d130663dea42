"""Each money-invariant violation told as a person checking it needs it: key, card, amount, what the client saw,
what the ledger holds.

The checkers (`reports.invariants`) name the evidence in a few ids, enough for summary.json and a machine; a
report that says "lost 8 payments" without naming them sends its reader to the console. Only the violations
shown are described (the first `SHOWN` of all kinds), so a run with a million phantoms costs one look-up of a
hundred keys, not a million.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import pandas as pd

SHOWN: Final = 100
# what a settlement violation (stuck, flipped, double_settled, callback_mismatch) adds to the client's answers
SETTLEMENT_WORDS: Final = (
    ("learned", "client learned"),
    ("then", "then"),
    ("delivered", "callback delivered"),
    ("ledger", "ledger says"),
    ("settled_rows", "settled rows"),
)
ATTEMPTS_SHOWN: Final = 4  # answers listed per key before "… N more"
TEXT_MAX: Final = 160  # a target's codes are its own text: bounded, whatever it sent


def yuan(fen: int | None) -> str:
    """Integer fen as ¥ with thousands separators, never through a float."""
    if fen is None:
        return "—"
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}¥{whole:,}.{cents:02d}"


@dataclass(frozen=True, slots=True)
class Violation:
    """One violation as the report's table shows it; `amount_fen` None when it has no single amount."""

    invariant: str
    key: str
    card: str
    amount_fen: int | None
    client_saw: str
    ledger_holds: str


def describe(
    violations: dict[str, list[dict[str, Any]]], history: pd.DataFrame, ledger: pd.DataFrame, shown: int = SHOWN
) -> tuple[list[Violation], int]:
    """The first `shown` violations (in the order lost, phantom, duplicate, over_cap) and how many more there
    are. `ledger` is the rows the checkers compared with (this run's own, for lost, phantom and duplicate)."""
    listed = [(name, found) for name, items in violations.items() for found in items]
    first = listed[:shown]
    keys = {str(found["key"]) for _, found in first if "key" in found}
    payments = {str(found["payment_id"]) for _, found in first if "payment_id" in found}
    attempts = history[history["key"].astype(str).isin(keys) | history["payment_id"].astype(str).isin(payments)]
    part_keys = set(attempts.loc[attempts["payment_id"].astype(str).isin(payments), "key"].astype(str))
    rows = ledger[ledger["idempotency_key"].astype(str).isin(keys | part_keys)]
    evidence = _Evidence(attempts, rows)
    return [evidence.violation(name, found) for name, found in first], len(listed) - len(first)


@dataclass(frozen=True, slots=True)
class _Evidence:
    attempts: pd.DataFrame  # history rows of the keys (and payments) described
    rows: pd.DataFrame  # ledger rows of those keys

    def violation(self, name: str, found: dict[str, Any]) -> Violation:
        if name == "over_cap":
            scope, owner = str(found["scope"]), str(found["id"])
            return Violation(
                name,
                "—",
                owner if scope == "card" else f"user {owner}",
                int(found["total_fen"]),
                "—",
                f"{yuan(int(found['total_fen']))} on {found['business_date']}, above the {scope} cap of "
                f"{yuan(int(found['cap_fen']))}",
            )
        if "learned" in found or "delivered" in found or "settled_rows" in found:  # a settlement check's
            said = [f"{label} {found[field]}" for field, label in SETTLEMENT_WORDS if field in found]
            return self._of(name, [str(found["key"])], "; ".join(said) + ": ")
        if "part" in found:  # one payment part recorded under several keys
            part = self.attempts[
                (self.attempts["payment_id"].astype(str) == str(found["payment_id"]))
                & (self.attempts["part"].astype(int) == int(found["part"]))
            ]
            keys = sorted(set(part["key"].astype(str)) & set(self.rows["idempotency_key"].astype(str)))
            return self._of(name, keys, f"payment {found['payment_id']} part {found['part']}: ")
        return self._of(name, [str(found["key"])], "")

    def _of(self, name: str, keys: list[str], lead: str) -> Violation:
        attempts = self.attempts[self.attempts["key"].astype(str).isin(keys)]
        rows = self.rows[self.rows["idempotency_key"].astype(str).isin(keys)]
        cards = [*rows["card_id"].astype(str), *attempts["card_id"].astype(str)]
        amounts = [*rows["amount_fen"], *attempts["amount_fen"]]
        return Violation(
            name,
            ", ".join(keys),
            cards[0] if cards else "—",
            int(amounts[0]) if amounts else None,
            _bounded(lead + _answers(attempts)),
            _holdings(rows),
        )


def _answers(attempts: pd.DataFrame) -> str:
    """What the client was told, attempt by attempt: `201 rp_…`, `503 CHANNEL_BUSY`, `no answer`."""
    if attempts.empty:
        return "never attempted"
    ordered = attempts.sort_values(["sent", "attempt"])
    told = []
    for status, code, repayment_id in zip(
        ordered["status"].astype(int), ordered["code"].astype(str), ordered["repayment_id"].astype(str), strict=True
    ):
        if status == 0:
            told.append("no answer")
        else:
            told.append(" ".join(part for part in (str(status), code, repayment_id) if part))
    more = len(told) - ATTEMPTS_SHOWN
    return "; ".join(told[:ATTEMPTS_SHOWN]) + (f"; … {more} more" if more > 0 else "")


def _holdings(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "no row for this key"
    held = [
        f"{repayment_id} {yuan(int(amount))} on {day}"
        for repayment_id, amount, day in zip(
            rows["repayment_id"].astype(str), rows["amount_fen"], rows["business_date"].astype(str), strict=True
        )
    ]
    return _bounded(("1 row: " if len(held) == 1 else f"{len(held)} rows: ") + "; ".join(held))


def _bounded(text: str) -> str:
    return text if len(text) <= TEXT_MAX else text[: TEXT_MAX - 1] + "…"
