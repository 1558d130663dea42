"""The three subcommands this package backs: compare, verify, report (run in-process, no Locust involved)."""

from __future__ import annotations

import argparse
import csv
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from loadtests.cli import compare as cmd_compare
from loadtests.cli import report as cmd_report
from loadtests.cli import verify as cmd_verify
from loadtests.cli.verdict_table import finish
from loadtests.errors import UsageError
from loadtests.orchestration.run_folder import conclude
from reports.analysis import analyse
from reports.frames import load_run
from reports.measure import caps
from reports.render.charts import build_charts
from runfolder.figures import read_figures
from tests.reports.runs import degrade, edit_meta, finished, ledger_execute


def run(module: ModuleType, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    code: int = module.run(parser.parse_args(list(argv)))
    return code


@pytest.fixture
def twin(run_dir: Path) -> Path:
    target = run_dir.parent / "candidate"
    shutil.copytree(run_dir, target)
    return target


def test_compare_an_equal_run_exits_0(run_dir: Path, twin: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(cmd_compare, str(finished(run_dir)), str(finished(twin))) == 0
    assert "no regression" in capsys.readouterr().out
    assert 'data-regressed="false"' in (twin / "comparison.html").read_text(encoding="utf-8")


def test_compare_a_regressed_run_exits_1(run_dir: Path, twin: Path, capsys: pytest.CaptureFixture[str]) -> None:
    degrade(twin, latency_factor=3.0, fail_every=10)
    html = twin.parent / "diff.html"
    assert run(cmd_compare, str(finished(run_dir)), str(finished(twin)), "--html", str(html)) == 1
    out = capsys.readouterr().out
    assert "REGRESSED" in out
    assert 'data-regressed="true"' in html.read_text(encoding="utf-8")


def test_compare_tolerances_are_configurable(run_dir: Path, twin: Path) -> None:
    degrade(twin, latency_factor=1.3, fail_every=1000)
    assert run(cmd_compare, str(finished(run_dir)), str(finished(twin)), "--p99-tol", "1000") == 0


def test_compare_a_missing_folder_is_a_usage_error(run_dir: Path) -> None:
    with pytest.raises(UsageError, match="not a directory") as caught:
        run(cmd_compare, str(finished(run_dir)), str(run_dir.parent / "nope"))
    assert caught.value.exit_code == 2


def test_compare_a_run_that_never_finished_is_a_usage_error_saying_how_to_finish_it(run_dir: Path, twin: Path) -> None:
    """A folder without summary.json has no measured figures: one line naming the command that writes them."""
    with pytest.raises(UsageError, match=r"has no summary\.json") as caught:
        run(cmd_compare, str(finished(run_dir)), str(twin))
    assert caught.value.exit_code == 2
    assert f"python -m reports {twin}" in str(caught.value) and "\n" not in str(caught.value)
    assert not (twin / "comparison.html").exists()


def test_a_baseline_that_never_finished_is_a_usage_error(run_dir: Path, twin: Path) -> None:
    with pytest.raises(UsageError, match=r"has no summary\.json") as caught:
        run(cmd_report, str(twin), "--baseline", str(run_dir))
    assert caught.value.exit_code == 2 and not (twin / "report.html").exists()


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"scale": 1.0}, "scale 0.25 vs 1"),
        ({"seed": 12}, "seed 11 vs 12"),
        ({"scenario": "soak"}, "scenario double11 vs soak"),
        ({"gateway_config.limits.global_tps": 340.0}, "gateway limits.global_tps 85 vs 340"),
    ],
)
def test_compare_refuses_a_verdict_on_runs_that_are_not_like_for_like(
    run_dir: Path, twin: Path, changes: dict[str, object], named: str
) -> None:
    edit_meta(run_dir, scale=0.25, seed=11, scenario="double11", **{"gateway_config.limits.global_tps": 85.0})
    edit_meta(twin, scale=0.25, seed=11, scenario="double11", **{"gateway_config.limits.global_tps": 85.0})
    edit_meta(twin, **changes)
    with pytest.raises(UsageError, match="not like for like") as caught:
        run(cmd_compare, str(finished(run_dir)), str(finished(twin)))
    assert named in str(caught.value) and "--force" in str(caught.value)
    assert caught.value.exit_code == 2
    assert not (twin / "comparison.html").exists(), "no verdict, no comparison page"


def test_compare_force_gives_a_verdict_with_a_warning(
    run_dir: Path, twin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit_meta(twin, scale=4.0)
    assert run(cmd_compare, str(finished(run_dir)), str(finished(twin)), "--force") == 0
    out = capsys.readouterr().out
    assert "not like for like" in out and "no regression" in out
    page = (twin / "comparison.html").read_text(encoding="utf-8")
    assert 'id="comparison-unlike"' in page and "scale 1 vs 4" in page


def test_a_baseline_that_is_not_like_for_like_is_said_so_on_the_page(run_dir: Path, twin: Path) -> None:
    assert run(cmd_report, str(twin), "--baseline", str(finished(run_dir))) == 0
    assert 'id="comparison-unlike"' not in (twin / "report.html").read_text(encoding="utf-8"), "like for like"
    edit_meta(twin, seed=99)
    assert run(cmd_report, str(twin), "--baseline", str(run_dir)) == 0
    page = (twin / "report.html").read_text(encoding="utf-8")
    assert 'id="comparison-unlike"' in page and "seed" in page and "vs 99" in page


def test_verify_passes_on_a_clean_run_and_fails_on_a_phantom(run_dir: Path) -> None:
    assert run(cmd_verify, str(run_dir)) == 0
    ledger_execute(
        run_dir,
        "INSERT INTO repayments VALUES ('rp_x', 'never-sent', 'u1', 'c1', 'ICBC', 100, '2026-11-11', 'r1', 'now')",
    )
    assert run(cmd_verify, str(run_dir), "--json") == 1


PREFIX = "s0a1b2c3d"


def own_keys(run_dir: Path) -> None:
    """Give the fixture's keys the run's prefix, as the generator does since meta.json carries `key_prefix`."""
    for path in (run_dir / "history").glob("*.csv"):
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({**row, "key": PREFIX + row["key"]} for row in rows)
    ledger_execute(run_dir, "UPDATE repayments SET idempotency_key = ? || idempotency_key", PREFIX)
    edit_meta(run_dir, key_prefix=PREFIX)


def other_run_row(run_dir: Path, key: str, amount_fen: int = 100) -> None:
    ledger_execute(
        run_dir,
        "INSERT INTO repayments VALUES (?, ?, 'u1', 'c1', 'ICBC', ?, '2026-11-11', 'r1', 'now')",
        f"rp_{key}",
        key,
        amount_fen,
    )


def test_verify_a_ledger_shared_with_another_run_checks_only_its_own_rows(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two runs on one ledger: the other run's rows are no phantom of this one (a false `phantom 444` before)."""
    own_keys(run_dir)
    for number in range(3):
        other_run_row(run_dir, f"s99999999{number:032x}")
    assert run(cmd_verify, str(run_dir)) == 0
    assert "3 ledger rows belong to other runs" in capsys.readouterr().out
    other_run_row(run_dir, f"{PREFIX}never-sent")  # this run's prefix, never attempted: a real phantom
    assert run(cmd_verify, str(run_dir), "--json") == 1
    assert '"phantom": 1' in capsys.readouterr().out


def test_every_money_figure_of_a_run_on_a_shared_ledger_counts_its_own_rows_only(run_dir: Path) -> None:
    """acme's bug run: "Amount repaid per business day" showed every row of a ledger other runs wrote to."""
    own_keys(run_dir)
    with sqlite3.connect(run_dir / "ledger.sqlite") as conn:
        own_fen, own_rows = conn.execute("SELECT SUM(amount_fen), COUNT(*) FROM repayments").fetchone()
    for number in range(3):
        other_run_row(run_dir, f"s99999999{number:032x}", amount_fen=123_456_00)
    frames = load_run(run_dir)
    per_day = caps.repaid_per_day(frames)
    assert (int(per_day["amount_fen"].sum()), int(per_day["repayments"].sum())) == (own_fen, own_rows)
    chart = {chart["id"]: chart for chart in build_charts(analyse(frames))}["repaid"]
    assert sum(chart["data"][0]["y"]) == sum(int(v) // 100 for v in per_day["amount_fen"])
    # the caps still count every charge of a card's day, whoever made it
    assert int(caps.charges_per_day(frames).per_card["amount_fen"].sum()) == own_fen + 3 * 123_456_00


def test_verify_says_unknown_for_over_cap_without_the_caps(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A --host run's folder with a ledger copied in: 9,000,000 yuan on one card is not "over_cap 0 ok"."""
    own_keys(run_dir)
    other_run_row(run_dir, "s99999999" + "0" * 32, amount_fen=900_000_000)
    edit_meta(run_dir, gateway_config=None, embedded=False)
    assert run(cmd_verify, str(run_dir)) == 3
    out = capsys.readouterr().out
    assert "over_cap" in out and "unknown" in out and "caps are unknown" in out.replace("\n", " ")


def test_verify_without_a_ledger_is_a_usage_error(run_dir: Path) -> None:
    (run_dir / "ledger.sqlite").unlink()
    with pytest.raises(UsageError, match="nothing to verify against"):
        run(cmd_verify, str(run_dir))


def test_report_rebuilds_only_the_page(run_dir: Path, twin: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(cmd_report, str(twin), "--baseline", str(finished(run_dir))) == 0
    assert str(twin / "report.html") in capsys.readouterr().out
    assert 'id="comparison-section"' in (twin / "report.html").read_text(encoding="utf-8")
    assert not (twin / "summary.json").exists()


def test_report_on_a_folder_without_meta_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"meta.json is missing"):
        run(cmd_report, str(tmp_path))


def test_the_surge_command_wires_compare_exit_codes(run_dir: Path, twin: Path) -> None:
    """Black-box, through the real entry point: 1 on a regression, 2 with one line on a bad folder."""
    degrade(twin, latency_factor=3.0, fail_every=10)
    finished(run_dir)
    finished(twin)
    surge = [sys.executable, "-m", "loadtests.cli.main", "compare"]
    regressed = subprocess.run([*surge, str(run_dir), str(twin)], capture_output=True, text=True, timeout=120)
    assert regressed.returncode == 1, regressed.stderr
    assert "REGRESSED" in regressed.stdout
    missing = subprocess.run([*surge, str(run_dir), str(twin / "nope")], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "not a directory" in missing.stderr
    edit_meta(twin, seed=99)
    unlike = subprocess.run([*surge, str(run_dir), str(twin)], capture_output=True, text=True, timeout=120)
    assert unlike.returncode == 2
    assert unlike.stderr.strip().count("\n") == 0 and "not like for like" in unlike.stderr


def test_surge_run_baseline_of_another_scale_warns_on_the_console(
    run_dir: Path, twin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit_meta(twin, scale=4.0)
    baseline = read_figures(finished(run_dir))
    finish(conclude(twin, baseline), twin)
    err = capsys.readouterr().err
    assert err.count("warning: --baseline: the runs are not like for like") == 1 and "scale 1 vs 4" in err
    finish(conclude(twin, read_figures(twin)), twin)
    assert "warning" not in capsys.readouterr().err
