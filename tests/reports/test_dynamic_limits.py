"""A run whose gateway had dynamic limits: over_cap judged by each day's cap in force, shown in the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reports.finalize import finalize_run
from reports.verify import verify_run
from tests.reports.runs import edit_meta

# The committed run's busiest cards reached 5,000,000 on 2026-11-10, exactly the ICBC card cap.
LOWERED_ON_THE_10TH = {
    "from": "2026-11-10T00:00:00+08:00",
    "until": "2026-11-11T00:00:00+08:00",
    "card_daily_fen": 4_000_000,
}


def with_schedule(run_dir: Path, *entries: dict[str, Any]) -> None:
    meta = json.loads((run_dir / "meta.json").read_text(encoding="utf-8"))
    config = meta["gateway_config"]
    config["limits"]["schedule"] = list(entries)
    edit_meta(run_dir, gateway_config=config)


def test_over_cap_and_the_report_use_the_cap_in_force_that_day(run_dir: Path) -> None:
    assert finalize_run(run_dir)["invariants"]["over_cap"] == 0
    with_schedule(run_dir, LOWERED_ON_THE_10TH)
    summary = finalize_run(run_dir)
    examples = summary["invariant_examples"]["over_cap"]
    assert summary["invariants"]["over_cap"] > 0
    assert {(e["business_date"], e["cap_fen"]) for e in examples} == {("2026-11-10", 4_000_000)}
    assert verify_run(run_dir)["counts"]["over_cap"] == summary["invariants"]["over_cap"]
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    table = page[page.index('<table id="caps-in-force">') :]
    table = table[: table.index("</table>")]
    assert "<td>2026-11-10</td>" in table and "<td>2026-11-11</td>" in table
    assert "¥40,000.00" in table and "¥50,000.00" in table


def test_a_report_without_dynamic_limits_has_no_caps_table(run_dir: Path) -> None:
    finalize_run(run_dir)
    assert 'id="caps-in-force"' not in (run_dir / "report.html").read_text(encoding="utf-8")
