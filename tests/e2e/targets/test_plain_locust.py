"""Plain `locust -f loadtests/locustfile.py`: a --target profile run, and the channel list read at test start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtests.channels import ChannelsUnavailable, served_channels
from tests.support.procs import ROOT, closed_port_url, locust_exit_code, replica, run_locust
from tests.support.runs import history

pytestmark = pytest.mark.e2e
SCENARIO = """
name = "tiny"
duration_s = 3
seed = 3
[population]
users = 50
bill_fen = {{ median = 100000, p99 = 400000 }}
[[rate]]
at_s = 0
per_s = {rate}
[arrivals]
pool = 20
"""
ZZB = """
[[channels]]
code = "ICBC"
single_fen = 5000000
card_daily_fen = 5000000
[[channels]]
code = "ZZB"
single_fen = 5000000
card_daily_fen = 5000000
"""


async def test_the_driver_draws_cards_on_the_channels_the_gateway_serves(tmp_path: Path) -> None:
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(SCENARIO.format(rate=30), encoding="utf-8")
    out = tmp_path / "run"
    with replica(tmp_path, ZZB) as url:
        assert served_channels(url) == ["ICBC", "ZZB"]
        rc = await run_locust(url, scenario, out, timeout_s=60)
    assert rc == locust_exit_code(out), (out / "locust" / "stdout.log").read_text()
    rows = history(out)
    assert {row["channel"] for row in rows} == {"ICBC", "ZZB"}  # not the six default banks
    assert not [row for row in rows if row["status"] == "400"]


async def test_without_a_channel_list_the_driver_warns_once_and_uses_the_defaults(tmp_path: Path) -> None:
    url = closed_port_url()
    with pytest.raises(ChannelsUnavailable, match="/v1/channels failed"):
        served_channels(url, timeout_s=1)
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(SCENARIO.format(rate=2).replace("duration_s = 3", "duration_s = 1"), encoding="utf-8")
    out = tmp_path / "run"
    await run_locust(url, scenario, out, timeout_s=60)
    log = (out / "locust" / "stdout.log").read_text()
    assert log.count("surge: warning: GET") == 1
    assert "drawing cards on the default channels ICBC" in log


async def test_plain_locust_drives_a_target_profile(tmp_path: Path) -> None:
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(SCENARIO.format(rate=30), encoding="utf-8")
    out = tmp_path / "run"
    with replica(tmp_path) as url:
        rc = await run_locust(url, scenario, out, "--target", str(ROOT / "examples/gateway/target.toml"))
    assert rc == locust_exit_code(out), (out / "locust" / "stdout.log").read_text()
    rows = history(out)
    assert len(rows) > 50
    assert {row["outcome"] for row in rows if row["status"] == "201"} == {"succeeded"}
    assert all(row["repayment_id"].startswith("rp_") for row in rows if row["status"] == "201")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["target"]["name"] == "surge-gateway"
