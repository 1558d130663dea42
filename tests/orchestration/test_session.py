"""The skeleton every run-folder command follows: gateway chosen before anything starts, events.csv on any exit."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import pytest

from loadtests.errors import UsageError
from loadtests.orchestration.session import choose_gateway, gateway_session
from loadtests.orchestration.stopping import Interrupt
from runfolder.events import EVENT_COLUMNS, RunEvent


def options(host: str | None = None, config: Path | None = None, replicas: int | None = None) -> argparse.Namespace:
    return argparse.Namespace(host=host, allow_remote=False, config=config, replicas=replicas)


def test_a_host_is_guarded_and_a_bad_config_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--allow-remote"):
        choose_gateway(options("http://10.1.2.3:8080"), {})
    with pytest.raises(UsageError, match="no such file"):
        choose_gateway(options(config=tmp_path / "nope.toml"), {})
    with pytest.raises(UsageError, match="user_tps"):
        choose_gateway(options(), {"limits": {"user_tps": -5}})
    remote = choose_gateway(options("http://127.0.0.1:9/"), {})
    assert remote.host == "http://127.0.0.1:9" and remote.config is None and remote.replicas_for_meta is None
    embedded = choose_gateway(options(replicas=2), {})
    assert embedded.embedded and embedded.config is not None and embedded.replicas_for_meta == 2
    assert choose_gateway(options(), {}).replicas_for_meta == 3


async def test_events_csv_is_written_even_when_the_command_fails_inside(tmp_path: Path) -> None:
    choice = choose_gateway(options("http://127.0.0.1:9"), {})
    with pytest.raises(RuntimeError, match="Locust died"):
        async with gateway_session(choice, tmp_path, Interrupt()) as session:
            session.start_unix = 1000.0
            session.events.append(RunEvent(1002.5, "scenario", "spike_start", "", "to 800/s"))
            raise RuntimeError("Locust died")
    with (tmp_path / "events.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows == [list(EVENT_COLUMNS), ["2.500", "1002.500000", "scenario", "spike_start", "", "to 800/s"]]
