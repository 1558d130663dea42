"""Scenarios from files: the built-ins shipped in the package and any TOML path, read and validated once.

Reading a file is the only I/O of the scenario package; a file that cannot be read, parsed or validated is a
`ScenarioError` naming the file and the key (exit 2), never a traceback in the middle of a run.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from errortext.validation import describe
from loadtests.scenario.model import Scenario, ScenarioError


def builtin_scenarios() -> dict[str, Path]:
    """Built-in scenario names → their TOML files shipped in the package."""
    folder = resources.files("loadtests.scenario") / "scenarios"
    return {Path(entry.name).stem: Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".toml")}


def load_scenario(ref: str) -> Scenario:
    """A built-in name or a TOML path → a validated Scenario; `ScenarioError` names the file and the key."""
    builtins = builtin_scenarios()
    path = builtins.get(ref, Path(ref))
    if ref not in builtins and not path.is_file():
        names = ", ".join(sorted(builtins))
        raise ScenarioError(f"scenario {ref!r}: neither a built-in ({names}) nor a TOML file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"scenario {path}: {exc}") from None
    try:
        return Scenario.model_validate(data, context={"base_dir": str(path.parent)})
    except ValidationError as exc:
        raise ScenarioError(f"scenario {path}: {describe(exc)}") from None


def validated_scenario(base: Scenario, **changes: Any) -> Scenario:
    """`base` with `changes` (plain data, as in a scenario file), validated as a whole like a file is: unlike
    `model_copy(update=...)`, which trusts its input, a bad value is a ScenarioError naming the key."""
    try:
        return Scenario.model_validate(base.model_dump() | changes)
    except ValidationError as exc:
        raise ScenarioError(f"scenario {base.name}: {describe(exc)}") from None
