"""Shared fixtures: a private copy of the committed run folder, so a test may rewrite it freely."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "run_small"
DERIVED = ("summary.json", "junit.xml", "timeseries.csv", "report.html", "comparison.html")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(FIXTURE, target, ignore=shutil.ignore_patterns(*DERIVED))
    return target
