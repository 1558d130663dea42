"""A study (docs/study.md): one scenario under several variants, to see which remedy helps.

A variant changes only what a team could change before a festival — the clients' decline policy (`client`), the
gateway's config (`gateway`: a partial config merged over the scenario's `[gateway]`) and the number of replicas
— and keeps the scenario's seed, so every variant meets the same users and the same arrivals. The file is
validated whole before anything runs: a bad key is one line naming it (exit 2), found before the first variant
has started, not after an hour of the others.

Merging `gateway`: tables merge key by key; `channels` merge by `code` (a variant that sets `tps` on ICBC
restates only `{code = "ICBC", tps = 20}`), a code the scenario does not list is added; any other list
(`limits.schedule`) replaces the scenario's.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator

from errortext.validation import describe
from loadtests.scenario.files import builtin_scenarios, load_scenario
from loadtests.scenario.model import Scenario, ScenarioError
from loadtests.scenario.parts import ClientConfig, Strict

DEFAULT_REPLICAS = 3  # as `surge run`


class StudyError(ScenarioError):
    """A study that cannot be run: unknown name, unreadable TOML, a bad or unknown key (exit 2)."""


class Variant(Strict):
    name: str = Field(min_length=1, max_length=64)
    """The variant's name, unique in the study: it names its run folder (DIR/NAME/), so one path segment."""
    description: str = ""
    """What the variant changes, in a sentence."""
    client: dict[str, Any] = Field(default_factory=dict)
    """Any `[client]` key of the scenario (policy, timeout_s, max_retries), over the scenario's."""
    gateway: dict[str, Any] = Field(default_factory=dict)
    """A partial gateway config (gateway-config-keys.md) merged over the scenario's `[gateway]`; channels merge by
    code."""
    replicas: int | None = Field(default=None, ge=1, le=16)
    """Replicas of this variant's embedded cluster (default: the study's `replicas`)."""

    @field_validator("name")
    @classmethod
    def _usable_as_a_folder(cls, value: str) -> str:
        """The name is the run folder's name under --out, so it must be one path segment."""
        if value.strip() != value or value in {".", ".."} or value.startswith("."):
            raise ValueError("must not start with '.' or a space, nor end with a space")
        if "/" in value or "\\" in value or not value.isprintable():
            raise ValueError("must not contain '/', '\\' or control characters (it names the variant's folder)")
        return value

    @field_validator("client")
    @classmethod
    def _client_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(ClientConfig.model_fields))
        if unknown:
            raise ValueError(f"unknown client key '{unknown[0]}' (known: {', '.join(ClientConfig.model_fields)})")
        return value


class Study(Strict):
    name: str = Field(min_length=1)
    """The study's name (study.json `study`)."""
    description: str = ""
    """The question the study asks, in a sentence."""
    scenario: str = Field(min_length=1)
    """A built-in scenario name, or a scenario file's path (relative to the study file's folder, else as given)."""
    scale: float = Field(default=1.0, gt=0, le=1000)
    """Multiplies every rate, as `surge run --scale` (`surge study --scale` overrides it)."""
    duration_s: float | None = Field(default=None, gt=0)
    """Stretches the scenario to this length, as `surge run --duration` (unset: the scenario's own)."""
    replicas: int = Field(default=DEFAULT_REPLICAS, ge=1, le=16)
    """Replicas of every variant's embedded cluster unless the variant says otherwise."""
    variants: tuple[Variant, ...] = Field(alias="variant", min_length=1, max_length=20)
    """The variants, run in this order, each on a fresh cluster and ledger with the scenario's seed."""

    @field_validator("variants")
    @classmethod
    def _unique_names(cls, value: tuple[Variant, ...]) -> tuple[Variant, ...]:
        names = [variant.name for variant in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"variant names must be unique (got {twice[0]!r} twice)")
        lowered = [name.casefold() for name in names]
        if len(set(lowered)) != len(lowered):
            raise ValueError("variant names must differ in more than letter case (they name folders)")
        return value

    def replicas_of(self, variant: Variant) -> int:
        return variant.replicas if variant.replicas is not None else self.replicas


def variant_scenario(base: Scenario, variant: Variant) -> Scenario:
    """The scenario as this variant runs it: the same seed, rates and faults; its client and gateway merged in."""
    data = base.model_dump(mode="python")
    data["client"] = {**data["client"], **variant.client}
    data["gateway"] = merge_gateway(base.gateway, variant.gateway)
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise StudyError(f"variant {variant.name!r}: {describe(exc)}") from None


def merge_gateway(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`extra` over `base` (module docstring): tables by key, channels by code, other lists replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in extra.items():
        current = merged.get(key)
        if key == "channels" and isinstance(current, list) and isinstance(value, list):
            merged[key] = _merge_channels(current, value)
        elif isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = merge_gateway(current, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _merge_channels(base: list[Any], extra: list[Any]) -> list[Any]:
    channels = copy.deepcopy(base)
    by_code = {channel.get("code"): channel for channel in channels if isinstance(channel, dict)}
    for channel in extra:
        target = by_code.get(channel.get("code")) if isinstance(channel, dict) else None
        if target is None:
            channels.append(copy.deepcopy(channel))
        else:
            target.update(copy.deepcopy(channel))
    return channels


def builtin_studies() -> dict[str, Path]:
    """Built-in study names → their TOML files shipped in the package."""
    folder = resources.files("loadtests.scenario") / "studies"
    return {Path(entry.name).stem: Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".toml")}


def load_study(ref: str) -> tuple[Study, Scenario]:
    """A built-in name or a TOML path → the validated study and its (unscaled) scenario; `StudyError` names the
    file and the key. Every variant's scenario is built here too, so a bad client value fails before any run."""
    builtins = builtin_studies()
    path = builtins.get(ref, Path(ref))
    if ref not in builtins and not path.is_file():
        names = ", ".join(sorted(builtins)) or "none"
        raise StudyError(f"study {ref!r}: neither a built-in ({names}) nor a TOML file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise StudyError(f"study {path}: {exc}") from None
    try:
        study = Study.model_validate(data)
    except ValidationError as exc:
        raise StudyError(f"study {path}: {describe(exc)}") from None
    try:
        scenario = load_scenario(scenario_ref(study, path))
        for variant in study.variants:
            variant_scenario(scenario, variant)
    except ScenarioError as exc:
        raise StudyError(f"study {path}: {exc}") from None
    return study, scenario


def scenario_ref(study: Study, study_path: Path) -> str:
    """A built-in scenario name as is; a path relative to the study file's folder (a built-in study ships its
    own scenario next to it), else as given."""
    if study.scenario in builtin_scenarios():
        return study.scenario
    candidate = study_path.parent / study.scenario
    return str(candidate) if candidate.is_file() else study.scenario
