"""summary.json's `memory` from hand-made RSS samples: warm-up skipped, a restarted replica measured fresh."""

from __future__ import annotations

import pandas as pd

from reports.memory import MIB, memory_growth
from runfolder.layout import MEMORY_COLUMNS


def samples(rows: list[tuple[float, str, int, float]]) -> pd.DataFrame:
    return pd.DataFrame([(t, name, pid, mib * MIB) for t, name, pid, mib in rows], columns=list(MEMORY_COLUMNS))


def test_growth_is_measured_after_the_warm_up_to_the_end_of_the_load() -> None:
    frame = samples([(t, "router", 10, 40.0 + t) for t in range(0, 12)])  # 40 MiB at t=0, 1 MiB a second
    assert memory_growth(frame, duration_s=8) == {"router": {"warm_mib": 42.0, "end_mib": 48.0, "growth": 0.1429}}


def test_a_restarted_replica_is_measured_on_its_newest_process() -> None:
    old = [(t, "r1", 1, 80.0) for t in range(2, 5)]
    new = [(t, "r1", 2, 30.0 + 0.1 * t) for t in range(5, 9)]
    growth = memory_growth(samples(old + new), duration_s=8)
    assert growth is not None
    assert growth["r1"] == {"warm_mib": 30.5, "end_mib": 30.8, "growth": 0.0098}


def test_no_samples_no_figure() -> None:
    assert memory_growth(pd.DataFrame(columns=list(MEMORY_COLUMNS)), duration_s=10) is None
