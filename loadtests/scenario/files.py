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
        raise ScenarioError(f"scenario {path}: {first_error(exc)}") from None


def validated_scenario(base: Scenario, **changes: Any) -> Scenario:
    """`base` with `changes` (plain data, as in a scenario file), validated as a whole like a file is: unlike
    `model_copy(update=...)`, which trusts its input, a bad value is a ScenarioError naming the key."""
    try:
        return Scenario.model_validate(base.model_dump() | changes)
    except ValidationError as exc:
        raise ScenarioError(f"scenario {base.name}: {first_error(exc)}") from None


def first_error(exc: ValidationError) -> str:
    """Pydantic's first complaint as "'rate.2.per_s' must be ... (got -5)"; the rest follow once it is fixed.

    An unknown key comes first: a typo (`duraton_s`) also makes the real key missing, and "unknown key
    'duraton_s'" is the line that tells the user what to fix."""
    errors = exc.errors()
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"unknown key '{key}'"
    if error["type"] == "missing":
        return f"missing key '{key}'"
    message = str(error["msg"]).removeprefix("Value error, ")
    if not error["loc"] and message.startswith("'"):
        return message  # a model-level check that names its own key
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"'{key}' {message[0].lower()}{message[1:]} (got {error.get('input')!r}){more}"
