"""The skeleton every run-folder command follows: gateway chosen before anything starts, events.csv on any exit."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from loadtests.errors import UsageError
from loadtests.orchestration.session import choose_gateway, gateway_session
from reports.runfolder import EVENT_COLUMNS, RunEvent


def test_a_host_is_guarded_and_a_bad_config_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--allow-remote"):
        choose_gateway("http://10.1.2.3:8080", allow_remote=False, config_path=None, replicas=3, overrides={})
    with pytest.raises(UsageError, match="no such file"):
        choose_gateway(None, allow_remote=False, config_path=tmp_path / "nope.toml", replicas=3, overrides={})
    remote = choose_gateway("http://127.0.0.1:9/", allow_remote=False, config_path=None, replicas=3, overrides={})
    assert remote.host == "http://127.0.0.1:9" and remote.config is None and remote.replicas_for_meta is None
    embedded = choose_gateway(None, allow_remote=False, config_path=None, replicas=2, overrides={})
    assert embedded.embedded and embedded.config is not None and embedded.replicas_for_meta == 2


async def test_events_csv_is_written_even_when_the_command_fails_inside(tmp_path: Path) -> None:
    choice = choose_gateway("http://127.0.0.1:9", allow_remote=False, config_path=None, replicas=3, overrides={})
    with pytest.raises(RuntimeError, match="Locust died"):
        async with gateway_session(choice, tmp_path) as session:
            session.start_unix = 1000.0
            session.events.append(RunEvent(1002.5, "scenario", "spike_start", "", "to 800/s"))
            raise RuntimeError("Locust died")
    with (tmp_path / "events.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows == [list(EVENT_COLUMNS), ["2.500", "1002.500000", "scenario", "spike_start", "", "to 800/s"]]
