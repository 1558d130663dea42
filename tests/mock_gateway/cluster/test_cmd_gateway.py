"""`surge gateway` as a user runs it: foreground, prints where things are, Ctrl-C stops all of it."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from loadtests.cli import gateway as cmd_gateway
from loadtests.errors import UsageError
from tests.mock_gateway.cluster.conftest import assert_all_gone, process_tree

SURGE = [sys.executable, "-m", "loadtests.cli.main", "gateway"]


def test_foreground_cluster_prints_url_where_the_token_is_and_state_dir_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    tree = []
    with subprocess.Popen(
        [*SURGE, "--replicas", "2", "--port", "0", "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            lines = [proc.stdout.readline() for _ in range(3)]  # bounded: the test timeout covers a hang
            url = re.search(r"router (http://127\.0\.0\.1:\d+)", lines[0])
            assert url is not None, lines
            token = json.loads((tmp_path / "cluster.json").read_text(encoding="utf-8"))["admin_token"]
            assert f"admin token generated into {tmp_path / 'cluster.json'}" in lines[1], lines
            assert token not in "".join(lines), "the token is in the private state file only (README: Security)"
            assert str(tmp_path) in lines[2]
            with urllib.request.urlopen(url.group(1) + "/readyz", timeout=2) as response:  # noqa: S310
                assert response.status == 200
            tree = process_tree(proc.pid)
            assert len(tree) == 3
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=15) == 0
            assert "stopped" in proc.stdout.read()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert_all_gone(tree)


def test_public_host_is_refused_with_exit_2(tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [*SURGE, "--host", "0.0.0.0", "--state-dir", str(tmp_path / "s")],  # noqa: S104 - must be refused
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("surge gateway: refusing to bind 0.0.0.0")
    assert time.monotonic() - started < 10


def test_bad_config_key_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text("[router]\nmood = 'calm'\n", encoding="utf-8")
    parser = argparse.ArgumentParser()
    cmd_gateway.add_arguments(parser)
    with pytest.raises(UsageError, match=r"router\.mood"):
        cmd_gateway.run(parser.parse_args(["--config", str(config)]))


def test_a_supplied_token_is_never_printed(tmp_path: Path) -> None:
    """`surge gateway` must never print SURGE_ADMIN_TOKEN: a CI secret would land in the CI log."""
    secret = "ci-secret-token-0123456789abcdef"
    env = {**os.environ, "SURGE_ADMIN_TOKEN": secret}
    with subprocess.Popen(
        [*SURGE, "--replicas", "1", "--port", "0", "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    ) as proc:
        try:
            assert proc.stdout is not None
            lines = [proc.stdout.readline() for _ in range(3)]
            assert "router http://" in lines[0], lines
            assert "not printed" in lines[1], lines
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=15) == 0
            output = "".join(lines) + proc.stdout.read()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert secret not in output
