"""Writes the key references of the file formats (docs/reference/*.md) from their pydantic models.

Every key's type, default, bounds and meaning come from the model that validates the file — the meaning from
the field's attribute docstring — so the reference cannot drift from what surge accepts: the test suite
(tests/test_docs_reference.py) fails when a file here is stale or a key has no docstring.

    python scripts/gen_reference.py           # rewrite docs/reference/
    python scripts/gen_reference.py --check   # exit 1 when a file is stale

A new file format joins by adding one `Reference` to `REFERENCES`.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "reference"


@dataclass(frozen=True)
class Reference:
    """One file format: its model, where its reference goes, and what the page says before the table."""

    name: str
    model: Callable[[], type[BaseModel]]  # imported lazily, so a broken model names itself
    page: str
    title: str
    intro: str
    example: str  # a complete example file, relative to the repository root (checked by the test suite)
    extra: dict[str, str] | None = None  # free-form keys (dict fields) → where they are documented
    more_examples: tuple[str, ...] = ()  # further examples for keys that exclude each other (a trace vs [[rate]])


def _forecast() -> type[BaseModel]:
    from loadtests.scenario.forecast import ForecastFile

    return ForecastFile


def _scenario() -> type[BaseModel]:
    from loadtests.scenario.model import Scenario

    return Scenario


def _target() -> type[BaseModel]:
    from loadtests.scenario.profile import TargetProfile

    return TargetProfile


def _gateway() -> type[BaseModel]:
    from mock_gateway.config import GatewayConfig

    return GatewayConfig


def _study() -> type[BaseModel]:
    from loadtests.scenario.study import Study

    return Study


REFERENCES = [
    Reference(
        name="scenario",
        model=_scenario,
        page="scenario-keys.md",
        title="Scenario file keys",
        intro=(
            "Every key of a scenario TOML file (`surge run FILE`, docs/scenarios.md). Unknown keys are errors that "
            "name the key (exit 2). `[[name]]` rows are arrays of tables."
        ),
        example="docs/examples/scenario.toml",
        more_examples=("examples/traces/peak-hour.toml",),
        extra={"gateway": "a partial gateway config: every key of [gateway-config-keys.md](gateway-config-keys.md)"},
    ),
    Reference(
        name="gateway",
        model=_gateway,
        page="gateway-config-keys.md",
        title="Gateway configuration keys",
        intro=(
            "Every key of the gateway's TOML config (`surge gateway --config FILE`, `surge run --config FILE`, a "
            "scenario's `[gateway]` table; docs/gateway.md). Every key is optional; "
            "`SURGE_<SECTION>__<KEY>` environment variables override the file. Unknown keys are errors that name "
            "the key (exit 2)."
        ),
        example="docs/examples/gateway.toml",
    ),
    Reference(
        name="study",
        model=_study,
        page="study-keys.md",
        title="Study file keys",
        intro=(
            "Every key of a study TOML file (`surge study FILE`, docs/study.md). Unknown keys are errors that name "
            "the key (exit 2), found before the first variant starts. `[[name]]` rows are arrays of tables."
        ),
        example="docs/examples/study.toml",
        extra={
            "variant.client": "any key of the scenario's `[client]`: [scenario-keys.md](scenario-keys.md)",
            "variant.gateway": (
                "a partial gateway config: every key of [gateway-config-keys.md](gateway-config-keys.md)"
            ),
        },
    ),
    Reference(
        name="target",
        model=_target,
        page="target-profile-keys.md",
        title="Target profile keys",
        intro=(
            "Every key of a target profile (`surge run SCENARIO --target FILE`, docs/targets.md). "
            "Unknown keys, unknown `{placeholders}` and bad JSON pointers are errors that name them (exit 2)."
        ),
        example="docs/examples/target.toml",
        more_examples=("docs/examples/target-signed-by-a-hook.toml",),
        extra={
            "request.headers, response.rules.json, response.rules.headers": "free-form tables (names of your "
            "headers, JSON pointers into your bodies), described in [../targets.md](../targets.md)",
        },
    ),
    Reference(
        name="forecast",
        model=_forecast,
        page="forecast-keys.md",
        title="Forecast file keys",
        intro=(
            "Every key of a forecast TOML file (`surge forecast FILE`, docs/forecast.md). Unknown keys are errors "
            "that name the key (exit 2); paths are relative to the file. `[[name]]` rows are arrays of tables."
        ),
        example="docs/examples/forecast.toml",
        more_examples=("docs/examples/forecast-calendar.toml",),
        extra={"demand.days.channel_shares": "a table of channel code → share of the day's payments"},
    ),
]


@dataclass(frozen=True)
class Key:
    path: str
    type: str
    default: str
    bounds: str
    meaning: str


def keys(model: type[BaseModel], prefix: str = "") -> Iterator[Key]:
    """Every key of `model`, depth first; a nested model (or a list of them) contributes its own keys."""
    for name, info in model.model_fields.items():
        path = f"{prefix}{info.alias or name}"  # the key as written in the file (`from`, not `from_`)
        nested, many = _nested(info.annotation)
        shown = f"[[{path}]]" if nested is not None and many else f"[{path}]" if nested is not None else path
        yield Key(shown, _type(info.annotation), _default(info), _bounds(info), _meaning(model, name, info))
        if nested is not None:
            yield from keys(nested, f"{path}.")


def _nested(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # an optional table: `Model | None`
        present = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(present) == 1:
            return _nested(present[0])
    args = [arg for arg in typing.get_args(annotation) if arg is not Ellipsis]
    if typing.get_origin(annotation) in (tuple, list) and len(args) == 1:
        inner, _ = _nested(args[0])
        return inner, inner is not None
    return None, False


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f'`"{arg}"`' for arg in args)
    if origin in (typing.Union, types.UnionType):
        present = [arg for arg in args if arg is not type(None)]  # TOML has no null: an optional key is left out
        return " or ".join(_type(arg) for arg in present)
    if origin in (tuple, list):
        if (len(args) == 2 and args[1] is Ellipsis) or len(args) == 1:
            inner = args[0]
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return "array of tables"
            return f"list of {_type(inner)}"
        return "[" + ", ".join(_type(arg) for arg in args) + "]"
    if origin is dict:
        return "table"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    names = {"NoneType": "none", "str": "string", "int": "integer", "float": "number", "bool": "boolean"}
    name = getattr(annotation, "__name__", str(annotation))
    return names.get(name, {"datetime": "date-time with offset", "Path": "path"}.get(name, name))


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return "see its keys"
    if isinstance(value, tuple | list) and value and isinstance(value[0], BaseModel):
        return f"{len(value)} entries (see docs)"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str | Path):
        return f'`"{value}"`' if str(value) else '`""`'
    if value == {} or value == ():
        return "empty"
    if isinstance(value, tuple):
        return f"`{list(value)}`"
    return f"`{value}`"


BOUNDS = {
    annotated_types.Gt: ("> {}", "gt"),
    annotated_types.Ge: (">= {}", "ge"),
    annotated_types.Lt: ("< {}", "lt"),
    annotated_types.Le: ("<= {}", "le"),
    annotated_types.MinLen: ("at least {} long", "min_length"),
    annotated_types.MaxLen: ("at most {} long", "max_length"),
}


def _bounds(info: FieldInfo) -> str:
    found = []
    for item in info.metadata:
        for kind, (text, attribute) in BOUNDS.items():
            if isinstance(item, kind):
                found.append(text.format(f"{getattr(item, attribute):,}"))
        pattern = getattr(item, "pattern", None)
        if pattern:
            found.append(f"matches `{pattern}`")
    return ", ".join(found)


class UndocumentedKey(Exception):
    """A model field without an attribute docstring: the reference would have a key without a meaning."""


def _meaning(model: type[BaseModel], name: str, info: FieldInfo) -> str:
    if not info.description:
        raise UndocumentedKey(
            f"{model.__module__}.{model.__name__}.{name} has no docstring: add one under the field "
            "(it becomes the key's meaning in docs/reference/), then run scripts/gen_reference.py"
        )
    return " ".join(info.description.split()).replace("|", "\\|")


def render(reference: Reference) -> str:
    model = reference.model()
    rows = [
        "| key | type | default | bounds | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key in keys(model):
        rows.append(f"| `{key.path}` | {key.type} | {key.default} | {key.bounds} | {key.meaning} |")
    extra = "".join(f"\n`{name}`: {where}.\n" for name, where in (reference.extra or {}).items())
    example = (ROOT / reference.example).read_text(encoding="utf-8").rstrip()
    return (
        f"# {reference.title}\n\n"
        f"<!-- Generated by scripts/gen_reference.py from {model.__module__}.{model.__name__}; do not edit. -->\n\n"
        f"{reference.intro}\n\n" + "\n".join(rows) + "\n" + extra + f"\n## A complete example ({reference.example})\n\n"
        f"```toml\n{example}\n```\n"
        + "".join(
            f"\n## Also ({more})\n\n```toml\n{(ROOT / more).read_text(encoding='utf-8').rstrip()}\n```\n"
            for more in reference.more_examples
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 when a generated file is stale")
    args = parser.parse_args(argv)
    stale = []
    for reference in REFERENCES:
        path = OUT / reference.page
        text = render(reference)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale: {', '.join(stale)}; run python scripts/gen_reference.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
