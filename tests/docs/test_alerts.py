"""docs/prometheus/alerts.yml: promtool accepts the rules, and its own unit tests (alerts_test.yml) pass — each
rule fires on a series past its bound and stays quiet under it, with the labels and annotations written out."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "docs" / "prometheus"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool not found (apt-get install prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}: required under CI")
        pytest.skip(message)
    return found


def test_rules_are_valid() -> None:
    result = subprocess.run([_promtool(), "check", "rules", "alerts.yml"], cwd=RULES, capture_output=True,
                            text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout + result.stderr


def test_rules_fire_where_their_tests_say() -> None:
    result = subprocess.run([_promtool(), "test", "rules", "alerts_test.yml"], cwd=RULES, capture_output=True,
                            text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_use_only_metrics_the_gateway_exports() -> None:
    """A rule on a metric name the gateway does not export never fires: the names are checked against the code."""
    rules = (RULES / "alerts.yml").read_text()
    used = set(re.findall(r"\b(surge_(?:gateway|router)_[a-z_]+?)(?:_total)?\b", rules))
    sources = "".join(p.read_text() for p in (ROOT / "mock_gateway").rglob("*.py"))
    exported = set(re.findall(r'"(surge_(?:gateway|router)_[a-z_]+)"', sources))
    assert used and used <= exported, used - exported
