"""finalize_run on the committed run folder: its files (docs/internals.md §5), verdicts, exit codes, escaping."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from reports.finalize import finalize_run
from reports.frames import load_run
from runfolder.layout import RunFolderError
from tests.reports.runs import edit_json, edit_meta, ledger_execute

SUMMARY_FIELDS = {"scenario", "seed", "scale", "valid", "exit_code", "totals", "slos", "invariants", "recovery"}
TOTALS = {"offered", "sent", "succeeded", "declined", "rate_limited", "shed", "error", "timeout", "late", "dropped"}


def junit_root(run_dir: Path) -> ET.Element:
    return ET.parse(run_dir / "junit.xml").getroot()  # noqa: S314 - the file the test itself just wrote


class VerdictRows(HTMLParser):
    """Collects the verdict banner's rows: (name, passed) from their data attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, bool]] = []
        self.scripts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        data = dict(attrs)
        if tag == "tr" and "verdict" in (data.get("class") or ""):
            self.rows.append((str(data["data-name"]), data["data-passed"] == "true"))
        if tag == "script":
            self.scripts.append(str(data.get("type")))


def test_writes_every_file_and_the_contract_fields(run_dir: Path) -> None:
    summary = finalize_run(run_dir)
    for name in ("summary.json", "junit.xml", "timeseries.csv", "report.html"):
        assert (run_dir / name).stat().st_size > 0, name
    assert json.loads((run_dir / "summary.json").read_text(encoding="utf-8")) == summary
    assert summary.keys() >= SUMMARY_FIELDS
    assert set(summary["totals"]) == TOTALS
    assert set(summary["invariants"]) == {"lost", "phantom", "duplicate", "over_cap"}
    assert all(set(v) == {"name", "value", "bound", "passed", "verdict", "reason"} for v in summary["slos"])
    assert all(v["verdict"] == "pass" and v["passed"] is True for v in summary["slos"])
    assert all(
        set(r) >= {"event", "at_s", "detect_s", "failover_s", "recover_s", "errors"} for r in summary["recovery"]
    )
    windows = (run_dir / "windows.jsonl").read_text(encoding="utf-8").splitlines()
    assert summary["totals"]["offered"] == sum(json.loads(line)["offered"] for line in windows)
    assert summary["exit_code"] == 0 and summary["valid"] is True


def test_timeseries_has_one_row_per_second_and_the_contract_columns(run_dir: Path) -> None:
    finalize_run(run_dir)
    with (run_dir / "timeseries.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    seconds = {json.loads(line)["t"] for line in (run_dir / "windows.jsonl").read_text().splitlines()}
    assert [int(row["t_s"]) for row in rows] == list(range(max(seconds) + 1))
    assert {"offered", "sent", "succeeded", "p50_ms", "p95_ms", "p99_ms", "max_ms", "amount_fen"} <= rows[0].keys()
    codes = {
        code for line in (run_dir / "windows.jsonl").read_text().splitlines() for code in json.loads(line)["codes"]
    }
    assert codes <= rows[0].keys()


def test_html_verdicts_equal_summary_and_junit(run_dir: Path) -> None:
    summary = finalize_run(run_dir)
    parser = VerdictRows()
    parser.feed((run_dir / "report.html").read_text(encoding="utf-8"))
    expected = [(v["name"], v["passed"]) for v in summary["slos"] + summary["invariant_verdicts"]]
    expected += [(v["name"], v["passed"]) for v in summary["run_verdicts"]]
    assert [name for name, _ in expected[-2:]] == ["generator_valid", "fault_failures"]
    assert parser.rows == expected
    cases = junit_root(run_dir).iter("testcase")
    assert [(case.get("name"), case.find("failure") is None) for case in cases] == expected


def test_an_impossible_slo_fails_with_exit_1_and_says_which(run_dir: Path) -> None:
    edit_meta(run_dir, slo={"max_p99_ms": 1, "min_success_ratio": 0.5})
    summary = finalize_run(run_dir)
    assert summary["exit_code"] == 1
    failed = {v["name"] for v in summary["slos"] if not v["passed"]}
    assert "p99_ms" in failed and "success_ratio" not in failed
    root = junit_root(run_dir)
    assert root.find("testsuite[@name='slo']").get("failures") == str(len(failed))
    parser = VerdictRows()
    parser.feed((run_dir / "report.html").read_text(encoding="utf-8"))
    assert ("p99_ms", False) in parser.rows


def acknowledged_ids(run_dir: Path) -> list[str]:
    ids = []
    for path in sorted((run_dir / "history").glob("*.csv")):
        with path.open(encoding="utf-8") as handle:
            ids += [row["repayment_id"] for row in csv.DictReader(handle) if row["status"] == "201"]
    return ids


def test_a_lost_repayment_fails_the_run(run_dir: Path) -> None:
    acknowledged = acknowledged_ids(run_dir)[0]
    assert ledger_execute(run_dir, "DELETE FROM repayments WHERE repayment_id = ?", acknowledged) == 1
    summary = finalize_run(run_dir)
    assert summary["invariants"]["lost"] == 1
    assert summary["exit_code"] == 1


def test_an_invalid_run_is_not_a_pass(run_dir: Path) -> None:
    edit_json(run_dir / "generator.json", valid=False, reasons=["worker CPU at 97 %"])
    summary = finalize_run(run_dir)
    assert summary["valid"] is False and summary["exit_code"] == 3
    assert "INVALID RUN" in (run_dir / "report.html").read_text(encoding="utf-8")


def test_money_errors_outrank_an_invalid_run(run_dir: Path) -> None:
    edit_json(run_dir / "generator.json", valid=False)
    ledger_execute(run_dir, "UPDATE repayments SET amount_fen = amount_fen + 10000000000 WHERE rowid = 1")
    assert finalize_run(run_dir)["exit_code"] == 1


def test_user_strings_are_escaped_everywhere(run_dir: Path) -> None:
    evil = "<script>alert(1)</script>"
    edit_meta(run_dir, scenario=evil, description='<img src=x onerror="alert(2)">')
    with (run_dir / "events.csv").open("a", encoding="utf-8") as handle:
        handle.write('3.0,0,chaos,fault_injected,"</script><script>alert(3)</script>",x\n')
    finalize_run(run_dir)
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert evil not in page and "<img src=x" not in page and "alert(3)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    parser = VerdictRows()
    parser.feed(page)
    assert parser.scripts == ["application/json", "application/octet-stream", "None"]


def test_missing_or_broken_run_folders_are_one_line_errors(tmp_path: Path, run_dir: Path) -> None:
    with pytest.raises(RunFolderError, match="not a directory"):
        finalize_run(tmp_path / "absent")
    (run_dir / "windows.jsonl").write_text('{"t": 0}\nnot json\n', encoding="utf-8")
    with pytest.raises(RunFolderError, match=r"windows.jsonl:2"):
        finalize_run(run_dir)


STEPS = """step,rate_per_s,start_s,end_s,offered,goodput,success_ratio,p99_ms,passed,limited_by
1,20,0,8,19.8,19.7,0.998,60,true,
2,40,8,16,39.6,39.1,0.995,90,true,
3,80,16,24,79.0,51.0,0.71,2300,false,success_ratio
"""


def test_a_capacity_search_is_judged_by_capacity_found_and_invariants(run_dir: Path) -> None:
    edit_meta(run_dir, kind="capacity")
    (run_dir / "steps.csv").write_text(STEPS, encoding="utf-8")
    capacity = {"max_rate_per_s": 40.0, "spread": 0.02, "limited_by": "success_ratio", "bracket": [40, 80]}
    (run_dir / "capacity.json").write_text(json.dumps(capacity), encoding="utf-8")
    summary = finalize_run(run_dir)
    assert [v["name"] for v in summary["slos"]] == ["capacity_found"] and summary["slos"][0]["value"] == 40.0
    assert summary["capacity"] == {"max_rate_per_s": 40.0, "spread": 0.02, "limited_by": "success_ratio"}
    assert summary["recovery"] == [] and summary["exit_code"] == 0
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert 'id="knee"' in page and 'id="knee_p99"' in page and 'id="capacity">40.0/s' in page


def test_without_capacity_json_the_knee_comes_from_the_steps(run_dir: Path) -> None:
    (run_dir / "steps.csv").write_text(STEPS, encoding="utf-8")
    summary = finalize_run(run_dir)
    assert summary["capacity"] == {"max_rate_per_s": 40.0, "spread": 1.0, "limited_by": "success_ratio"}


def test_the_clock_comes_from_the_cluster_state_but_the_token_never_leaves_it(run_dir: Path) -> None:
    (run_dir / "cluster").mkdir()
    state = {"admin_token": "s3cret-admin-token", "clock": {"start": "2026-11-11T00:00:00+08:00", "anchor_unix": 5.0}}
    (run_dir / "cluster" / "cluster.json").write_text(json.dumps(state), encoding="utf-8")
    frames = load_run(run_dir)
    assert frames.clock is not None and frames.clock.anchor_unix == 5.0
    assert frames.clock.start.isoformat() == "2026-11-11T00:00:00+08:00"
    finalize_run(run_dir)
    for name in ("summary.json", "junit.xml", "timeseries.csv", "report.html"):
        assert "s3cret-admin-token" not in (run_dir / name).read_text(encoding="utf-8"), name


def test_a_history_without_its_columns_is_a_one_line_error(run_dir: Path) -> None:
    (run_dir / "history" / "extra.csv").write_text("payment_id,key\np,k\n", encoding="utf-8")
    with pytest.raises(RunFolderError, match=r"extra.csv: unreadable history \(Column 'attempt'"):
        finalize_run(run_dir)
