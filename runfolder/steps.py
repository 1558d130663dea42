"""steps.csv of a capacity search: one row per probe, rewritten whole after each (docs/internals.md §6)."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Final


@dataclass(frozen=True, slots=True)
class CapacityStep:
    """One probe of a capacity search, one row of steps.csv: its rate, its measured window (`start_s`/`end_s`
    against `started_unix`, after the warm-up), what it got, and whether it met the SLOs (else what limited it)."""

    step: int
    rate_per_s: float
    start_s: float
    end_s: float
    offered: float
    goodput: float
    success_ratio: float
    p99_ms: float
    passed: bool
    limited_by: str


STEP_COLUMNS: Final[tuple[str, ...]] = tuple(field.name for field in fields(CapacityStep))


def write_steps_csv(path: Path, steps: Iterable[CapacityStep]) -> None:
    """steps.csv, rewritten whole after every probe so that a search cut short still leaves its steps."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(STEP_COLUMNS)
        writer.writerows(astuple(step) for step in steps)
