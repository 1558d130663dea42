"""A well-formed but wrong response rule (here `/repayment_idd` for `/repayment_id`) makes every paid answer match
no rule: the run says so up front, on the console and in the report, with a sample body whose secrets are
replaced, and the success ratio is unknown rather than a failing service (exit 3, not 1)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.generator.target import SAMPLE_CHARS, answer_sample
from tests.e2e.targets.test_sqlite_target_run import GOOD, SURGE, profile
from tests.support.procs import LOCUSTFILE, ROOT, replica

SECRET = "s3cret-token-4711"


def test_an_answer_sample_replaces_the_requests_secrets_and_is_bounded() -> None:
    body = (f'{{"token": "{SECRET}", "echo": "{SECRET}"}}' + "x" * 1000).encode()
    sample = answer_sample(200, body, (SECRET,))
    assert SECRET not in sample["body"] and sample["body"].count("[secret]") == 2
    assert len(sample["body"]) == SAMPLE_CHARS and sample["cut"] is True
    assert answer_sample(204, None, (SECRET,)) == {"status": 204, "body": "", "cut": False}


@pytest.mark.e2e
def test_a_wrong_response_rule_is_said_up_front_and_leaves_the_success_ratio_unknown(tmp_path: Path) -> None:
    path = profile(tmp_path, GOOD)
    text = path.read_text(encoding="utf-8")
    text = text.replace('payment_id = "/repayment_id"', 'json = { "/repayment_idd" = "x" }', 1)
    text = text.replace('{"user_id": "{user_id}"', '{"user_id": "${SURGE_TEST_SECRET}-{user_id}"', 1)
    path.write_text(text, encoding="utf-8")
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(
        'name = "tiny"\nduration_s = 3\nseed = 9\n[population]\nusers = 50\n'
        "bill_fen = { median = 100000, p99 = 400000 }\n[[rate]]\nat_s = 0\nper_s = 20\n",
        encoding="utf-8",
    )
    out = tmp_path / "run"
    with replica(tmp_path) as url:
        result = subprocess.run(
            [str(SURGE), "run", str(scenario), "--target", str(path), "--host", url, "--out", str(out)],
            capture_output=True, text=True, timeout=120, env={**os.environ, "SURGE_TEST_SECRET": SECRET},
        )  # fmt: skip
    assert result.returncode == 3, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    unmatched = summary["unmatched_answers"]
    assert unmatched["count"] > 20 and unmatched["count"] * 2 > unmatched["answered_2xx"], unmatched
    line = f"{unmatched['count']:,} answers (2xx) matched no response rule — check the profile"
    assert unmatched["line"] == line
    sample = unmatched["sample"]
    assert sample["status"] == 201 and '"repayment_id"' in sample["body"] and "[secret]" in sample["body"]
    [ratio] = [verdict for verdict in summary["slos"] if verdict["name"] == "success_ratio"]
    assert ratio["verdict"] == "unknown" and ratio["reason"] == line
    assert result.stdout.index(line) < result.stdout.index("surge verdicts"), "said before the verdicts"
    assert "e.g. HTTP 201: " in result.stdout
    page = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="unmatched"' in page and line in page
    for text_out in (result.stdout, result.stderr, page, json.dumps(summary)):
        assert SECRET not in text_out
    for kept in out.rglob("*"):
        if kept.is_file() and kept.suffix in {".json", ".csv", ".jsonl", ".html", ".log"}:
            assert SECRET not in kept.read_text(encoding="utf-8", errors="replace"), kept


@pytest.mark.e2e
def test_plain_locust_logs_the_unmatched_answers_before_its_verdicts(tmp_path: Path) -> None:
    path = profile(tmp_path, GOOD)
    path.write_text(
        path.read_text(encoding="utf-8").replace('payment_id = "/repayment_id"', 'json = { "/cod" = "0000" }', 1),
        encoding="utf-8",
    )
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(
        'name = "tiny"\nduration_s = 2\nseed = 9\n[population]\nusers = 50\n[[rate]]\nat_s = 0\nper_s = 20\n',
        encoding="utf-8",
    )
    out = tmp_path / "run"
    with replica(tmp_path) as url:
        result = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url, "--scenario",
             str(scenario), "--target", str(path), "--surge-out", str(out), "--only-summary"],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
        )  # fmt: skip
    log = result.stdout + result.stderr
    assert result.returncode == 3, log[-3000:]
    found = re.search(r"surge: ([\d,]+) answers \(2xx\) matched no response rule — check the profile", log)
    assert found is not None, log[-3000:]
    assert "surge:   e.g. HTTP 201: {" in log
    assert log.index(found.group(0)) < log.index("surge:   slo "), "said before the verdicts"
