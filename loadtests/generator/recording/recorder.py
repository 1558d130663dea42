"""What one generating process records: its per-second windows, its history rows, its health.

A delta of windows rather than whole windows leaves the process every second (`take_delta`), because merging is
associative (windows.py): a process never has to know when a second is final. History rows are written in the
master's time (`offset_s`), so that rows of workers whose clocks differ line up in one run folder.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from loadtests.generator.health import CpuSampler, LagMeter
from loadtests.generator.history import HistoryWriter
from loadtests.generator.windows import Window, WindowBook
from runfolder.history import Attempt
from runfolder.layout import write_json
from runfolder.outcomes import ACCEPTED, OutcomeClass


class ProcessRecorder:
    """Everything one generating process records; `take_delta` hands its windows over and starts afresh."""

    def __init__(self, t0: float, history_path: Path | None, late_ms: float, offset_s: float = 0.0) -> None:
        self.t0 = t0  # on this process's own clock (the master's t0 + offset_s)
        self.offset_s = offset_s  # this clock minus the master's: history rows are written in the master's time
        self.late_s = late_ms / 1000.0
        self.book = WindowBook()
        self.history = HistoryWriter(history_path) if history_path is not None else None
        self.sample_path = (
            None if history_path is None else history_path.with_name(f"{history_path.stem}.unmatched.json")
        )
        self.sampled = False
        self.sample: dict[str, Any] | None = None
        self.cpu = CpuSampler()
        self.lag = LagMeter()
        self.in_flight = 0  # attempts sent and not yet recorded: the last delta waits for them

    def second(self, unix: float) -> int:
        return math.floor(unix - self.t0)

    def offered(self, intended: float) -> None:
        self.book.at(self.second(intended)).offered += 1

    def taken(self, intended: float, now: float, *, starved: bool = False) -> None:
        """An arrival begun at `now`; `starved`: no user was free when it fell due (driver.Generator.begin)."""
        window = self.book.at(self.second(intended))
        window.sent += 1
        if now - intended > self.late_s:
            window.late += 1
            window.starved += starved

    def cancelled(self, intended: float) -> None:
        """An offered arrival the run's early stop cancelled before it was due: no longer offered."""
        self.book.at(self.second(intended)).offered -= 1

    def dropped(self, intended: float, *, starved: bool = False) -> None:
        window = self.book.at(self.second(intended))
        window.dropped += 1
        window.starved += starved

    def plan_followed(self, now: float) -> None:
        self.book.at(self.second(now)).plans_followed += 1

    def sending(self) -> None:
        self.in_flight += 1

    def attempt(self, row: Attempt, outcome: OutcomeClass, *, deferred: bool = False) -> None:
        """One attempt ended; `deferred`: a 202 whose settlement watcher writes its history row (`write_row`)."""
        self.in_flight -= 1
        self.book.at(self.second(row.done)).record(
            outcome,
            intended_us=(row.done - row.intended) * 1e6,
            service_us=(row.done - row.sent) * 1e6,
            code=row.code,
            replica=row.replica,
            amount_fen=row.amount_fen if outcome == "succeeded" and row.status != ACCEPTED else 0,
        )
        if not deferred:
            self.write_row(row)

    def sample_unmatched(self, sample: dict[str, Any]) -> None:
        """Keep the first 2xx answer no response rule matched (`history/<worker>.unmatched.json`), once: the
        report shows it beside the count, so that a wrong rule is seen as one."""
        self.sampled = True
        self.sample = sample  # a worker sends it to the master with its next windows
        if self.sample_path is not None:
            write_json(self.sample_path, sample)

    def write_row(self, row: Attempt) -> None:
        if self.history is None:
            return
        if self.offset_s:
            shift = self.offset_s
            final_at = row.final_at - shift if row.final_at else 0.0
            row = replace(row, intended=row.intended - shift, sent=row.sent - shift, done=row.done - shift,
                          final_at=final_at)  # fmt: skip
        self.history.write(row)

    def sample_health(self, now: float) -> None:
        """Once a second: this process's CPU and worst wake-up lag go into the current second."""
        window = self.book.at(self.second(now))
        window.cpu_pct = max(window.cpu_pct, self.cpu.sample())
        window.lag_ms = max(window.lag_ms, self.lag.take_max())
        window.workers += 1

    def take_delta(self) -> list[Window]:
        return self.book.take()

    def close(self) -> None:
        if self.history is not None:
            self.history.close()
