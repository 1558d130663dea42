"""Attempts that failed on the client's credentials (a target profile's wrong key, missing token, refused client
certificate) are reported apart from the service's errors: they never lower the success ratio, they show as
their own `credentials` verdict ("N attempts refused as unauthorized — check the profile's credentials"), and
when they are more than half of the attempts what the service did is unknown, not failed."""

from __future__ import annotations

import json
from pathlib import Path

from reports.finalize import finalize_run


def refuse(run_dir: Path, every: int, code: str = "UNAUTHORIZED") -> int:
    """Turn one success in `every` into an error with `code` in every second's windows; how many were turned."""
    path = run_dir / "windows.jsonl"
    lines, moved_total = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        window = json.loads(line)
        succeeded = window["classes"].get("succeeded")
        if succeeded and succeeded["count"] >= every:
            moved = succeeded["count"] // every
            succeeded["count"] -= moved
            error = window["classes"].setdefault("error", {"count": 0})
            error["count"] += moved
            if "intended" not in error:
                error["intended"] = error["service"] = succeeded["intended"]
            window.setdefault("codes", {})[code] = window.get("codes", {}).get(code, 0) + moved
            moved_total += moved
        lines.append(json.dumps(window))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return moved_total


def test_a_few_unauthorized_attempts_are_reported_apart_and_do_not_fail_the_service(run_dir: Path) -> None:
    clean = finalize_run(run_dir)
    assert "credentials" not in {v["name"] for v in clean["run_verdicts"]}
    refused = refuse(run_dir, 5)  # a fifth: far below the 0.95 success ratio if counted as service errors
    summary = finalize_run(run_dir)
    ratio = next(v for v in summary["slos"] if v["name"] == "success_ratio")
    clean_ratio = next(v for v in clean["slos"] if v["name"] == "success_ratio")
    assert ratio["verdict"] == clean_ratio["verdict"] == "pass"
    credentials = next(v for v in summary["run_verdicts"] if v["name"] == "credentials")
    assert credentials["verdict"] == "unknown" and credentials["value"] == refused
    assert f"{refused} of " in credentials["reason"] and "check the profile's credentials" in credentials["reason"]
    assert summary["exit_code"] == 3  # not a pass: the run did not test what it meant to
    assert "check the profile" in (run_dir / "report.html").read_text(encoding="utf-8")


def test_more_than_half_refused_makes_the_service_verdicts_unknown(run_dir: Path) -> None:
    refuse(run_dir, 1, "AUTH_FAILED")  # every success now failed on the token endpoint
    summary = finalize_run(run_dir)
    assert {v["verdict"] for v in summary["slos"] if not v["name"].startswith("recovery")} == {"unknown"}
    assert all("refused as unauthorized (AUTH_FAILED" in str(v["reason"]) for v in summary["slos"][:2])
    assert summary["exit_code"] == 3
    # whether each incident's recovery was within the SLO is as unknown as its verdict: never a stale true/false
    assert [entry["played"] for entry in summary["recovery"]] == [True, True]
    assert {entry["recovered_within_slo"] for entry in summary["recovery"]} == {None}
    assert {v["verdict"] for v in summary["slos"] if v["name"].startswith("recovery")} == {"unknown"}
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    rows = page[page.index('<table id="recovery">') : page.index("</table>", page.index('<table id="recovery">'))]
    assert 'class="unknown" data-played="true"' in rows and 'class="pass"' not in rows


def test_expired_tokens_refreshed_and_re_sent_are_counted_apart_but_the_credentials_held(run_dir: Path) -> None:
    refuse(run_dir, 5, "TOKEN_EXPIRED")
    summary = finalize_run(run_dir)
    assert "credentials" not in {v["name"] for v in summary["run_verdicts"]}
    assert next(v for v in summary["slos"] if v["name"] == "success_ratio")["verdict"] == "pass"
