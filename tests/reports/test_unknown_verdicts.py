"""Verdicts surge did not earn: a fault never played, a fault whose injection failed, invariants with
no ledger or no caps. Each is unknown (or a harness failure), never a pass — in summary.json, junit.xml, the
report's banner and the exit code."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from reports.finalize import finalize_run
from tests.reports.runs import edit_json, edit_meta


def rewrite_chaos(run_dir: Path, kind: str | None, detail: str = "") -> None:
    """Replace the fixture's one `fault_injected` row (the kill at 18 s) by `kind`, or drop it (None)."""
    path = run_dir / "events.csv"
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    kept = []
    for row in rows:
        if row["source"] == "chaos":
            if kind is None:
                continue
            row = {**row, "kind": kind, "detail": detail}
        kept.append(row)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)


def skipped_cases(run_dir: Path) -> dict[str, str]:
    root = ET.parse(run_dir / "junit.xml").getroot()  # noqa: S314 - the file the test itself just wrote
    return {
        str(case.get("name")): str(skipped.get("message"))
        for case in root.iter("testcase")
        if (skipped := case.find("skipped")) is not None
    }


def banner(run_dir: Path) -> str:
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    start = page.index('id="banner"')
    return page[start : page.index("</div>", start)]


def recovery_verdict(summary: dict[str, object]) -> dict[str, object]:
    (found,) = [v for v in summary["slos"] if str(v["name"]).startswith("recovery_s[kill")]  # type: ignore[attr-defined]
    return found  # type: ignore[no-any-return]


def test_a_fault_never_played_is_not_played_and_its_recovery_unknown(run_dir: Path) -> None:
    """A plain `locust -f` run: meta.json lists the kill, events.csv has no chaos row for it. (The fixture's
    windows still hold the kill's damage, which the spike before it now absorbs: a lenient bound keeps the
    spike a pass, so the exit code speaks of the unknown alone.)"""
    rewrite_chaos(run_dir, None)
    meta = json.loads((run_dir / "meta.json").read_text(encoding="utf-8"))
    edit_meta(run_dir, slo={**meta["slo"], "max_recovery_s": 30})
    summary = finalize_run(run_dir)
    (kill,) = [entry for entry in summary["recovery"] if entry["event"] == "kill primary"]
    assert kill["played"] is False and "not played" in kill["not_played"]
    assert kill["recover_s"] is None and kill["recovered_within_slo"] is None
    verdict = recovery_verdict(summary)
    assert verdict["verdict"] == "unknown" and verdict["passed"] is None
    assert "not played" in skipped_cases(run_dir)[str(verdict["name"])]
    assert summary["exit_code"] == 3
    assert "PASS" not in banner(run_dir) and "unknown" in banner(run_dir)
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert 'data-played="false"' in page and "within SLO yes" not in page


def test_a_fault_skipped_against_host_carries_the_reason(run_dir: Path) -> None:
    rewrite_chaos(run_dir, "fault_skipped", "kill needs the embedded cluster (run with --host)")
    summary = finalize_run(run_dir)
    verdict = recovery_verdict(summary)
    assert verdict["verdict"] == "unknown"
    assert verdict["reason"] == "not played: kill needs the embedded cluster (run with --host)"
    assert "fault_failures" not in {v["name"] for v in summary["run_verdicts"]}


def test_a_fault_whose_injection_failed_exits_3(run_dir: Path) -> None:
    """`target = "r9"` → 404 from the admin API: `fault_failed`, recovery unknown, the harness failed (exit 3)."""
    rewrite_chaos(run_dir, "fault_failed", "kill failed: HTTP 404 no replica r9")
    summary = finalize_run(run_dir)
    verdict = recovery_verdict(summary)
    assert verdict["verdict"] == "unknown" and "injection failed: kill failed: HTTP 404" in str(verdict["reason"])
    (failures,) = [v for v in summary["run_verdicts"] if v["name"] == "fault_failures"]
    assert failures["verdict"] == "fail" and failures["value"] == 1 and "HTTP 404" in failures["reason"]
    assert summary["exit_code"] == 3
    assert "FAIL" in banner(run_dir)


def test_without_a_ledger_invariants_are_unknown_not_passed(run_dir: Path) -> None:
    """A gateway surge did not start: nothing to check the money against, so the banner never says PASS."""
    (run_dir / "ledger.sqlite").unlink()
    summary = finalize_run(run_dir)
    assert summary["invariants"] == dict.fromkeys(("lost", "phantom", "duplicate", "over_cap"))
    assert [v["verdict"] for v in summary["invariant_verdicts"]] == ["unknown"] * 4
    assert set(summary["unknown"]) == {"lost", "phantom", "duplicate", "over_cap"}
    assert all("no ledger" in message for message in skipped_cases(run_dir).values())
    assert summary["exit_code"] == 3
    assert "PASS" not in banner(run_dir) and "NOT PROVEN" in banner(run_dir)


def test_over_cap_is_unknown_without_the_caps(run_dir: Path) -> None:
    """A ledger but no gateway config (a --host run whose ledger was copied in): over_cap cannot be judged."""
    edit_meta(run_dir, gateway_config=None, embedded=False)
    summary = finalize_run(run_dir)
    verdicts = {v["name"]: v for v in summary["invariant_verdicts"]}
    assert verdicts["over_cap"]["verdict"] == "unknown" and "caps are unknown" in verdicts["over_cap"]["reason"]
    assert verdicts["lost"]["verdict"] == "pass"
    assert summary["exit_code"] == 3


def test_an_exec_fault_against_a_target_reports_detection_and_why_failover_is_unknown(run_dir: Path) -> None:
    """The fixture's kill at 18 s replayed as a team's own `exec` fault against a target: no router events, so
    detect comes from the history and fail over is unknown with its reason — in summary.json and the report."""
    rewrite_chaos(run_dir, "fault_injected", "exec kill 4242: exit 0")
    path = run_dir / "events.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(line for line in lines if ",cluster," not in line), encoding="utf-8")
    meta = json.loads((run_dir / "meta.json").read_text(encoding="utf-8"))
    fault = {**meta["faults"][0], "action": "exec", "target": "acme-1", "command": ["kill", "4242"]}
    edit_meta(run_dir, faults=[fault], embedded=False, target={"name": "acme"})
    finalize_run(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    (entry,) = [r for r in summary["recovery"] if r["event"].startswith("exec")]
    assert entry["detect_s"] is not None and 0 <= entry["detect_s"] < 5
    assert entry["failover_s"] is None
    assert entry["why_unknown"]["failover_s"] == "surge cannot see the target's replicas"
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    row = page[page.index("<td>exec acme-1</td>") :]
    row = row[: row.index("</tr>")]
    assert "unknown: surge cannot see the target&#39;s replicas" in row
    assert "— s" not in row


def test_history_a_worker_never_delivered_makes_every_invariant_unknown_never_passed(run_dir: Path) -> None:
    """A distributed run whose master did not get every history row (a worker lost, a drain cut short): the
    invariants were counted over part of the attempts, so none of them is a pass, and the summary says how many
    rows of which worker are missing. Dropping the history rows as the master would have lacked them also makes
    phantom payments appear — which must not become a failure either."""
    history = run_dir / "history" / "w1.csv"
    lines = history.read_text(encoding="utf-8").splitlines(keepends=True)
    history.write_text("".join(lines[: len(lines) // 2]), encoding="utf-8")
    missing = len(lines) - len(lines) // 2
    edit_json(run_dir / "generator.json", history_missing=missing, history_missing_by={"w1": missing})
    summary = finalize_run(run_dir)
    verdicts = {v["name"]: v for v in summary["invariant_verdicts"]}
    assert {v["verdict"] for v in verdicts.values()} == {"unknown"}
    assert all(f"{missing} history rows never reached the master (w1: {missing})" in v["reason"]
               for v in verdicts.values())  # fmt: skip
    assert set(summary["invariants"].values()) == {None}
    assert summary["exit_code"] != 0
