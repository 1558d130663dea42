"""Helpers that rewrite a copy of a run folder: the hand-made variations the tests need."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from reports import hdr
from reports.finalize import finalize_run


def edit_meta(run_dir: Path, **changes: Any) -> None:
    """Change meta.json keys; a dotted key ("gateway_config.limits.global_tps") reaches inside."""
    path = run_dir / "meta.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        table = meta
        for part in parents:
            table = table[part]
        table[last] = value
    path.write_text(json.dumps(meta), encoding="utf-8")


def edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data), encoding="utf-8")


def ledger_execute(run_dir: Path, sql: str, *params: Any) -> int:
    with sqlite3.connect(run_dir / "ledger.sqlite") as conn:
        changed = conn.execute(sql, params).rowcount
    conn.close()
    return changed


def _scaled(encoded: str, factor: float) -> str:
    idx, counts = hdr.decode_sparse(encoded)
    scaled = hdr.new_histogram()
    for value, count in zip(hdr.bucket_table().highest_us[idx], counts, strict=True):
        scaled.record_value(max(int(value * factor), 1), int(count))
    return str(scaled.encode().decode("ascii"))


def degrade(run_dir: Path, latency_factor: float, fail_every: int) -> None:
    """Slow every latency by a factor and turn one success in `fail_every` into an error, second by second."""
    path = run_dir / "windows.jsonl"
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        window = json.loads(line)
        for data in window["classes"].values():
            for kind in ("intended", "service"):
                if data.get(kind):
                    data[kind] = _scaled(data[kind], latency_factor)
        succeeded = window["classes"].get("succeeded")
        if succeeded and succeeded["count"] >= fail_every:
            moved = succeeded["count"] // fail_every
            succeeded["count"] -= moved
            error = window["classes"].setdefault("error", {"count": 0})
            error["count"] += moved
            if "intended" not in error:
                error["intended"] = error["service"] = succeeded["intended"]
        lines.append(json.dumps(window))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def finished(run_dir: Path) -> Path:
    """The folder as a finished run leaves it (summary.json, timeseries.csv, junit.xml, report.html), measured anew
    after any edit: what a comparison reads."""
    finalize_run(run_dir)
    return run_dir
