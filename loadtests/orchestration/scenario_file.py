"""Writing a Scenario back to TOML, for generated scenarios (capacity probes, chaos schedules) that Locust
loads by path like any user's file."""

from __future__ import annotations

from pathlib import Path

import tomli_w

from loadtests.scenario.files import load_scenario
from loadtests.scenario.model import Scenario


def write_scenario(scenario: Scenario, path: Path) -> Path:
    """Write and read back: a generated file that would not load as the same scenario is a bug, found here."""
    path.write_text(tomli_w.dumps(scenario.model_dump(mode="json", exclude_none=True)), encoding="utf-8")
    if load_scenario(str(path)) != scenario:
        raise ValueError(f"{path} does not read back as the scenario written")
    return path
