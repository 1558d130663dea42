"""docs/reference/ is generated from the pydantic models (scripts/gen_reference.py): it fails here when stale,
when a key has no docstring, or when a complete example misses a key or no longer validates."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", ROOT / "scripts" / "gen_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


GEN = generator()


@pytest.mark.parametrize("reference", GEN.REFERENCES, ids=lambda reference: reference.name)
def test_the_reference_is_up_to_date(reference: Any) -> None:
    page = ROOT / "docs" / "reference" / reference.page
    assert page.read_text(encoding="utf-8") == GEN.render(reference), (
        f"{page.relative_to(ROOT)} is stale: run python scripts/gen_reference.py"
    )


def paths(data: Any, prefix: str = "") -> set[str]:
    """Every key path of a parsed TOML document; the items of an array of tables share their paths."""
    found: set[str] = set()
    items = data if isinstance(data, list) and data and all(isinstance(i, dict) for i in data) else [data]
    for item in items:
        if not isinstance(item, dict):
            continue
        for key, value in item.items():
            found.add(f"{prefix}{key}")
            found |= paths(value, f"{prefix}{key}.")
    return found


@pytest.mark.parametrize("reference", GEN.REFERENCES, ids=lambda reference: reference.name)
def test_the_complete_example_has_every_key_and_validates(reference: Any) -> None:
    model = reference.model()
    found: set[str] = set()
    for example in (reference.example, *reference.more_examples):  # together: keys that exclude each other
        data = tomllib.loads((ROOT / example).read_text(encoding="utf-8"))
        model.model_validate(data, context={"base_dir": str((ROOT / example).parent)})
        found |= paths(data)
    documented = {key.path.strip("[]") for key in GEN.keys(model)}
    internal = {"clock.anchor_unix"}  # set by the cluster itself; the example shows it commented out
    missing = documented - found - internal
    assert not missing, f"{reference.example} lacks {sorted(missing)}"


def test_a_key_without_a_docstring_is_refused() -> None:
    from pydantic import BaseModel

    class Bare(BaseModel):
        speed: float = 1.0

    with pytest.raises(GEN.UndocumentedKey, match=r"Bare.speed has no docstring"):
        list(GEN.keys(Bare))
