"""Reading a run folder the way a test checks it: every attempt of history/*.csv, the windows, and the JSON files."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


def history(out: Path) -> list[dict[str, str]]:
    """Every attempt of the run (history/*.csv, one file per generator process), as text."""
    rows: list[dict[str, str]] = []
    for path in sorted((out / "history").glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            rows.extend(csv.DictReader(handle))
    return rows


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def windows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "windows.jsonl").read_text(encoding="utf-8").splitlines() if line]


def generator(out: Path) -> dict[str, Any]:
    return read_json(out / "generator.json")
