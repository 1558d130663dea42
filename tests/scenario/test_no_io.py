"""The scenario package is data: nothing it imports, ours or the standard library's, opens a URL.

import-linter's contract in pyproject.toml forbids sockets, subprocesses and HTTP clients, but it can forbid an
outside package only whole, and `urllib.parse` is pure and used; so `urllib.request` (and its `urllib.error`)
is checked here, in every module of ours that importing `loadtests.scenario` loads.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import grimp

URL_OPENERS = frozenset({"urllib.request", "urllib.error", "http.client"})


def _imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _reached_from_scenario() -> set[str]:
    graph = grimp.build_graph("loadtests", "mock_gateway", "reports")
    scenario = {"loadtests.scenario"} | graph.find_descendants("loadtests.scenario")
    reached = set(scenario)
    for module in scenario:
        reached |= graph.find_upstream_modules(module)
    return reached


def test_no_module_reached_from_scenario_opens_a_url() -> None:
    reached = _reached_from_scenario()
    assert "loadtests.scenario.profile" in reached  # the walk found the package, so an empty result means something
    offenders = {}
    for module in sorted(reached):
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None, module
        found = _imported_names(Path(spec.origin)) & URL_OPENERS
        if found:
            offenders[module] = sorted(found)
    assert offenders == {}


def test_the_check_sees_a_url_opener(tmp_path: Path) -> None:
    """The walk above would pass on a parser that saw nothing: it must see the import the old channels module had."""
    module = tmp_path / "opener.py"
    module.write_text("import json\nimport urllib.request\nfrom urllib.error import HTTPError\n", encoding="utf-8")
    assert _imported_names(module) & URL_OPENERS == {"urllib.request", "urllib.error"}
