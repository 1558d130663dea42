"""`surge verify`: the money invariants re-checked from a run folder's history and ledger copy, nothing else.

Restricted to the run's own ledger rows (its idempotency-key prefix, `reports.invariants.evidence.own_rows`), so
a ledger that two runs shared gives no false phantom; a run whose client watched asynchronous settlement adds
stuck, flipped, double_settled and callback_mismatch (`reports.invariants.settlement`); over_cap is unknown when
the run's meta.json has no caps to check against (a gateway surge did not start), never "0 ok".
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from reports import judge
from reports.frames import read_history, read_ledger
from reports.invariants.check import check
from reports.invariants.evidence import own_rows
from reports.measure import caps
from reports.violations import describe
from runfolder.layout import RunFolder, RunFolderError
from runfolder.models import read_meta
from runfolder.verdict import worst


def verify_run(run_dir: Path) -> dict[str, Any]:
    """`{"counts", "verdicts", "outcomes", "violations", "described", "more", "other_rows", "passed"}`;
    `described` tells the first violations as the report does (`reports.violations`), `more` counts the rest;
    `passed` is None when nothing failed but a verdict is unknown.

    Raises `RunFolderError` when the folder has no ledger copy: a run against a remote gateway has nothing to
    verify against, and saying "passed" would be a lie.
    """
    meta = read_meta(run_dir)
    ledger = read_ledger(RunFolder(run_dir).ledger)
    if ledger is None:
        raise RunFolderError(f"{run_dir / 'ledger.sqlite'} is missing: nothing to verify against")
    card_caps, user_cap = caps.caps(meta)
    history = read_history(RunFolder(run_dir).history)
    report = check(
        history,
        ledger,
        card_caps,
        user_cap,
        key_prefix=meta.key_prefix,
        schedule=caps.cap_schedule(meta),
        foreign=caps.is_foreign(meta),
        settle_watched=meta.settlement is not None,
    )
    verdicts = judge.invariant_verdicts(
        judge.Findings(
            slo=meta.slo,
            invariant_counts=report.counts(),
            invariants_unknown={**judge.uncheckable(card_caps, user_cap), **report.unknown},
            settlement_watched=report.settlement,
        )
    )
    described, more = describe(report.violations, history, own_rows(ledger, meta.key_prefix))
    return {
        "counts": report.counts(),
        "verdicts": verdicts,
        "outcomes": report.outcomes,
        "violations": report.violations,
        "described": [asdict(violation) for violation in described],
        "more": more,
        "other_rows": report.other_rows,
        "passed": worst(verdict.state for verdict in verdicts).passed,
    }
