"""Every invariant checker over one run's history and ledger, and the report they make together."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from reports.invariants.daily_caps import DailyTotals, Schedule, daily_totals, find_over_cap
from reports.invariants.evidence import Evidence, own_rows, settled_money
from reports.invariants.money import find_duplicates, find_lost, find_phantom
from reports.invariants.settlement import SETTLEMENT_NAMES, check_settlement, watched_rows

NAMES = ("lost", "phantom", "duplicate", "over_cap")


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
    target profile, `evidence`; `settle_watched`: the run's client watched settlement, so the settlement checks
    are made even when nothing was accepted).

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


def check_run(
    history: pd.DataFrame,
    ledger: pd.DataFrame | None,
    card_caps: dict[str, int],
    user_cap: int | None,
    totals: DailyTotals,
    key_prefix: str | None,
    schedule: Schedule,
    *,
    foreign: bool,
    settle_watched: bool,
) -> tuple[InvariantReport | None, str]:
    """`check` over a run: None without a ledger; None and the reason when a checker crashed — a crashing
    checker proves nothing, so its verdicts are unknown and the rest of the report is still written."""
    if ledger is None:
        return None, ""
    try:
        return check(
            history,
            ledger,
            card_caps,
            user_cap,
            totals,
            key_prefix,
            schedule,
            foreign=foreign,
            settle_watched=settle_watched,
        ), ""
    except Exception as exc:  # any crash of a checker is the same unknown, reported with its error
        return None, f"the invariant checkers could not run: {type(exc).__name__}: {exc}"
