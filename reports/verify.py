"""`surge verify`: the money invariants re-checked from a run folder's history and ledger copy, nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reports import invariants, metrics, slo
from reports.frames import RunFolderError, read_history, read_ledger, read_meta


def verify_run(run_dir: Path) -> dict[str, Any]:
    """`{"counts", "verdicts", "outcomes", "violations", "passed"}`.

    Raises `RunFolderError` when the folder has no ledger copy: a run against a remote gateway has nothing to
    verify against, and saying "passed" would be a lie.
    """
    meta = read_meta(run_dir)
    ledger = read_ledger(run_dir / "ledger.sqlite")
    if ledger is None:
        raise RunFolderError(f"{run_dir / 'ledger.sqlite'} is missing: nothing to verify against")
    card_caps, user_cap = metrics.caps(meta)
    history = read_history(run_dir / "history")
    report = invariants.check(history, ledger, card_caps, user_cap, foreign=metrics.is_foreign(meta))
    verdicts = slo.invariant_verdicts(report.counts(), metrics.Slo.from_meta(meta))
    return {
        "counts": report.counts(),
        "verdicts": verdicts,
        "outcomes": report.outcomes,
        "violations": report.violations,
        "passed": all(verdict["passed"] for verdict in verdicts),
    }
