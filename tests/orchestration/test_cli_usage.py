"""Bad usage is exit 2 and one readable line, with nothing started (README)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def surge(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadtests.cli.main", *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "no-such-scenario"], "no-such-scenario"),
        (["run", "double11", "--scale", "-1"], "--scale"),
        (["run", "double11", "--scale", "abc"], "--scale"),
        (["run", "double11", "--workers", "0"], "--workers"),
        (["run", "double11", "--host", "http://10.20.30.40:8080"], "--allow-remote"),
        (["run", "double11", "--host", "not a url"], "--host"),
        (["run", "double11", "--config", "missing.toml"], "missing.toml"),
        (["run", "double11", "--baseline", "nowhere"], "--baseline"),
        (["run", "double11", "--scale", "1e308"], "--scale: must be at most 100"),
        (["run", "double11", "--scale", "40"], "past the limit of 20,000"),
        (["run", "double11", "--host", "http://127.0.0.1:9", "--config", "gw.toml"], "--config"),
        (["run", "double11", "--host", "http://127.0.0.1:9", "--replicas", "2"], "--replicas"),
        (["compare", "a", "b", "--html", "missing-folder/cmp.html"], "missing-folder"),
        (["find-capacity", "--host", "http://192.168.0.1"], "--allow-remote"),
        (["find-capacity", "--slo-success", "1.5"], "--slo-success"),
        (["find-capacity", "--config", "missing.toml"], "missing.toml"),
        (["frobnicate"], "invalid choice"),
        (["gateway", "--port", "70000"], "--port"),
        (["gateway", "--port", "-1"], "--port"),
    ],
)
def test_bad_usage_exits_2_with_one_line(args: list[str], needle: str, tmp_path: Path) -> None:
    result = surge(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists(), "nothing may be started or written on bad usage"


def test_a_baseline_that_never_finished_is_refused_before_the_run(tmp_path: Path) -> None:
    """--baseline is read before anything starts: a folder without summary.json has no measured figures."""
    baseline = tmp_path / "base"
    shutil.copytree(Path(__file__).resolve().parents[1] / "fixtures" / "run_small", baseline)
    result = surge("run", "double11", "--baseline", str(baseline), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--baseline" in result.stderr and f"`python -m reports {baseline}` finishes it" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_bad_scenario_file_names_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nduration_s = 10\nbogus = 1\n[[rate]]\nat_s = 0\nper_s = 5\n')
    result = surge("run", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert "bogus" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_bad_fault_target_names_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'name = "x"\nduration_s = 10\n[[rate]]\nat_s = 0\nper_s = 5\n'
        '[[faults]]\nat_s = 5\naction = "channel_outage"\ntarget = "CCBX"\n'
    )
    result = surge("run", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert "'faults.0.target': unknown channel 'CCBX'" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_an_unreachable_host_is_exit_3_before_the_run(tmp_path: Path) -> None:
    result = surge("run", "due-date-wave", "--host", "http://127.0.0.1:9", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "--host http://127.0.0.1:9 does not answer" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_bad_gateway_config_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text("[limits]\nuser_tps = -5\n")
    result = surge("run", "double11", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "user_tps" in result.stderr


def test_scenarios_lists_the_seven_builtins(tmp_path: Path) -> None:
    result = surge("scenarios", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert sorted(names) == sorted(
        [
            "double11",
            "festival618",
            "due-date-wave",
            "zero-down-installments",
            "capacity-step",
            "soak",
            "settlement-wave",
        ]
    )


def test_a_capacity_slo_override_out_of_range_is_a_usage_error_naming_the_option(tmp_path: Path) -> None:
    """Validated like a scenario file (it was copied in unvalidated and then refused as a harness failure, 3)."""
    result = surge("find-capacity", "--slo-success", "1.5", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    expected = "surge find-capacity: '--slo-success' must be <= 1 (got 1.5)"
    assert result.stderr.strip() == expected


def test_a_signal_while_surge_loads_its_subcommands_is_one_line_and_130_or_143(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Importing every subcommand takes seconds on a busy machine; a Ctrl-C then printed a KeyboardInterrupt
    traceback from deep inside pandas."""
    from loadtests.cli import main

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(main, "build_parser", interrupted)
    assert main.main(["run", "double11"]) == 130
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "not started" in err and "Traceback" not in err

    def terminated(*_: object) -> None:  # a cancelled CI job: SIGTERM's default would end surge with no word at all
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this returns
        raise AssertionError("SIGTERM was not handled")

    monkeypatch.setattr(main, "build_parser", terminated)
    assert main.main(["run", "double11"]) == 143
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "not started — terminated (SIGTERM)" in err
    assert signal.getsignal(signal.SIGTERM) is before, "the subcommand gets SIGTERM's handler back"
