"""The run folder's windows.jsonl and generator.json, merged by the master (or the lone process) from deltas.

    worker (or the lone process)                      master (or the lone process)
    ProcessRecorder ── every second: JSON deltas ──►  RunWriter ── seconds older than CLOSE_LAG_S ──► windows.jsonl
      └─ history/<worker>.csv                           └─ at the end: stragglers rewritten, generator.json

A delta that arrives for a second already appended is folded into the final rewrite instead of being lost. The
writer also feeds the live [[abort]] guard with every delta and keeps the figures of the run's end: lost
workers, history rows that never reached the master, its backlog.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from errortext.console_text import one_line
from loadtests.generator.abort import AbortGuard
from loadtests.generator.health import CpuSampler, assess_generator, new_lag_histogram
from loadtests.generator.stream import HistorySink
from loadtests.generator.windows import Window, WindowBook
from loadtests.scenario.parts import AbortRule
from runfolder.layout import RunFolder, write_json
from runfolder.models import GeneratorVerdict, LostWorker

CLOSE_LAG_S = 3  # a second is appended to windows.jsonl this long after it ended (drop bound + flush + transit)


class RunWriter:
    """The master's merge of every process's deltas, written to the run folder as seconds close."""

    def __init__(self, out_dir: Path, t0: float, abort_rules: tuple[AbortRule, ...] = ()) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.guard = AbortGuard(abort_rules)
        self.out_dir = out_dir
        self.t0 = t0
        self.book = WindowBook()
        self.closed: dict[int, dict[str, Any]] = {}
        self.rewrite = False
        self.cpu = CpuSampler()
        self.lag = new_lag_histogram()
        self.history = HistorySink(out_dir)  # workers' streamed history (a lone process writes its own)
        self.history_lines: dict[int, int] = {}  # worker index → lines its spool held at its last report
        self.backlog_max = 0
        self.lost: list[LostWorker] = []
        self._path = RunFolder(out_dir).windows
        self._path.write_text("", encoding="utf-8")

    def merge(self, windows: list[Window]) -> None:
        for window in windows:
            self.guard.add(window)
            if window.t in self.closed:
                late = Window.from_json(self.closed[window.t])
                late.merge(window)
                self.closed[window.t] = late.to_json()
                self.rewrite = True
            else:
                self.book.merge(window)

    def sample_own_cpu(self, now: float) -> None:
        """The master's CPU counts too (it merges and serialises); it adds no worker to the count."""
        window = self.book.at(math.floor(now - self.t0))
        window.cpu_pct = max(window.cpu_pct, self.cpu.sample())

    def close_before(self, now: float) -> None:
        """Append every second that ended more than CLOSE_LAG_S ago."""
        self._append(self.book.take(math.floor(now - self.t0) - CLOSE_LAG_S))

    def _append(self, windows: list[Window]) -> None:
        if not windows:
            return
        lines = [window.to_json() for window in windows]
        with self._path.open("a", encoding="utf-8") as handle:
            for line in lines:
                self.closed[line["t"]] = line
                handle.write(json.dumps(line, separators=(",", ":")) + "\n")

    def finish(self, started_unix: float, expected_offered: float, *, stopped: bool = False) -> GeneratorVerdict:
        """Close every second, rewrite the file if stragglers changed a closed one, write generator.json."""
        self._append(self.book.take())
        if self.rewrite:
            tmp = self._path.with_suffix(".jsonl.tmp")
            with tmp.open("w", encoding="utf-8") as handle:
                for t in sorted(self.closed):
                    handle.write(json.dumps(self.closed[t], separators=(",", ":")) + "\n")
            tmp.replace(self._path)
        windows = (Window.from_json(line) for line in self.closed.values())
        verdict = assess_generator(windows, expected_offered, self.lag, started_unix=started_unix, stopped=stopped)
        self.history.close()
        missing = {
            f"worker-{index}": lines - self.history.rows(index)
            for index, lines in sorted(self.history_lines.items())
            if lines > self.history.rows(index)
        }
        if self.lost:
            reasons = [
                *verdict.reasons,
                *(f"{lost.worker} ({lost.node}) lost at t = {lost.at_s:.0f} s: {lost.dropped} of its arrivals "
                  "counted dropped" for lost in self.lost),
            ]  # fmt: skip
            verdict = verdict.model_copy(update={"valid": False, "reasons": reasons, "limited_by": "generator"})
        verdict = verdict.model_copy(
            update={
                "lost_workers": self.lost,
                "history_missing": sum(missing.values()),
                "history_missing_by": missing,
                "history_backlog_max_bytes": self.backlog_max,
            }
        )
        write_json(RunFolder(self.out_dir).generator, verdict)
        return verdict


def summary_lines(writer: RunWriter, verdict: GeneratorVerdict) -> list[str]:
    """The short console summary printed at the end (loud when the generator was the bottleneck)."""
    total = Window(0)
    for line in writer.closed.values():
        window = Window.from_json(line)
        window.t = 0
        total.merge(window)
    lines = [
        f"surge: {total.offered} offered, {total.sent} sent, {total.late} late, {total.dropped} dropped "
        f"over {len(writer.closed)} s → {one_line(writer.out_dir)}",
    ]
    for name, stats in total.classes.items():
        lines.append(
            f"surge:   {name:<12} {stats.count:>8}  p50 {stats.intended.get_value_at_percentile(50) / 1000:8.1f} ms"
            f"  p99 {stats.intended.get_value_at_percentile(99) / 1000:8.1f} ms (from intended send)"
        )
    if verdict.valid:
        lines.append(
            f"surge: generator valid (CPU max {verdict.cpu_pct_max:.0f}%, lag p99 {verdict.lag_ms_p99:.1f} ms)"
        )
    else:
        bar = "!" * 78
        lines += [bar, f"surge: RUN INVALID: {verdict.bottleneck}; these figures are not the gateway's"]
        lines += [f"surge:   - {reason}" for reason in verdict.reasons]
        lines.append(bar)
    if verdict.history_missing:
        by = ", ".join(f"{worker}: {rows}" for worker, rows in verdict.history_missing_by.items())
        lines.append(
            f"surge: HISTORY INCOMPLETE: {verdict.history_missing} rows never reached the master ({by}); "
            "the invariants are unknown"
        )
    return lines
