"""Config loading: files, env overrides, defaults, and errors that name the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mock_gateway.config_sources import load_config
from mock_gateway.errors import ConfigError


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_have_realistic_channels_and_loopback_host() -> None:
    config = load_config(None, env={})
    codes = [channel.code for channel in config.channels]
    assert codes == ["ICBC", "CCB", "ABC", "BOC", "CMB"]
    assert len({(c.single_fen, c.card_daily_fen) for c in config.channels}) > 1
    assert config.server.host == "127.0.0.1"
    assert config.server.allow_public_bind is False
    assert config.limits.user_daily_fen == 20_000_000


def test_toml_file_and_env_override(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "g.toml",
        """
[clock]
speed = 1440
start = "2026-11-11T00:00:00+08:00"
[limits]
global_tps = 5000
[[channels]]
code = "ICBC"
single_fen = 5000000
card_daily_fen = 5000000
latency_ms = { median = 20, p99 = 120 }
""",
    )
    config = load_config(path, env={"SURGE_LIMITS__GLOBAL_TPS": "800", "SURGE_SERVER__HOST": "localhost"})
    assert config.limits.global_tps == 800
    assert config.server.host == "localhost"
    assert config.clock.speed == 1440
    assert [c.code for c in config.channels] == ["ICBC"]


def test_json_file_as_the_cluster_writes_it(tmp_path: Path) -> None:
    path = write(tmp_path, "g.json", json.dumps({"limits": {"replica_tps": 10}, "clock": {"anchor_unix": 1.5e9}}))
    config = load_config(path, env={})
    assert config.limits.replica_tps == 10
    assert config.clock.anchor_unix == 1.5e9


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[limits]\nuser_tps = -5\n", {}, "'limits.user_tps' must be > 0 (got -5)"),
        ("[limits]\nfoo = 1\n", {}, "unknown key 'limits.foo'"),
        ("[nope]\nx = 1\n", {}, "unknown key 'nope'"),
        ("", {"SURGE_LIMITS__USER_TPS": "0"}, "'limits.user_tps' must be > 0 (got 0)"),
        ("", {"SURGE_LIMITS__BOGUS": "1"}, "unknown key 'limits.bogus'"),
        ("", {"SURGE_WHAT__X": "1"}, "unknown key 'what'"),
        ("", {"SURGE_CHANNELS__CODE": "X"}, "cannot be set from the environment"),
        ("[[channels]]\ncode = 'ICBC'\nsingle_fen = 1\n", {}, "missing key 'channels.0.card_daily_fen'"),
        ("[router]\nmode = 'round-robin'\n", {}, "router.mode"),
        ("[clock]\nstart = 2026-11-11T00:00:00\n", {}, "clock.start"),
        ("[limits]\nuser_daily_fen = 1.5\n", {}, "limits.user_daily_fen"),
        (
            "[[channels]]\ncode='A'\nsingle_fen=1\ncard_daily_fen=1\n[[channels]]\ncode='A'\nsingle_fen=1\ncard_daily_fen=1\n",
            {},
            "'channels': channel codes must be unique",
        ),
        ("not toml = = =", {}, "is not valid"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, env: dict[str, str], message: str) -> None:
    path = write(tmp_path, "bad.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=env)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_overrides_win_over_env_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "g.toml", "[limits]\nreplica_tps = 1\n")
    config = load_config(path, env={"SURGE_LIMITS__REPLICA_TPS": "2"}, overrides={"limits": {"replica_tps": 3}})
    assert config.limits.replica_tps == 3


def test_public_dict_has_no_admin_token() -> None:
    config = load_config(None, env={"SURGE_ADMIN__TOKEN": "s3cret"})
    assert config.admin.token == "s3cret"
    public = config.public_dict()
    assert "s3cret" not in json.dumps(public)
    assert public["limits"]["replica_tps"] == 2000


def test_unrelated_surge_variables_are_ignored() -> None:
    config = load_config(None, env={"SURGE_ADMIN_TOKEN": "t", "SURGE_HOME": "/x"})
    assert config.admin.token == ""


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.toml", env={})
