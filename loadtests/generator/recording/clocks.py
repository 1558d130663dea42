"""The master's measure of its workers' clocks, before the start and for a worker that joins mid-run.

A worker's arrivals are due on its own clock: one whose clock is off by seconds would send them at the wrong
time. So the master pings every worker CLOCK_ROUNDS times at once and takes each worker's offset from its
shortest round trip (stream.estimate_offset); the offset travels to the worker in MSG_START and is corrected
for there, and a worker further off than the bound (or measured too loosely) is refused. meta.json keeps every
worker's reading.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import gevent
from locust.runners import MasterRunner

from loadtests.generator.recording.protocol import MSG_PING
from loadtests.generator.stream import MAX_CLOCK_UNCERTAINTY_S, estimate_offset
from runfolder.layout import RunFolder, RunFolderError, write_json
from runfolder.models import WorkerClock, read_meta

CLOCK_ROUNDS = 5  # round trips per worker at test start; the shortest one counts
CLOCK_ROUND_WAIT_S = 0.5  # a round without every answer by then moves on


class ClockCheck:
    """Ping rounds to the workers and their answers (MSG_PONG, `on_pong`), read into one WorkerClock each."""

    def __init__(self, runner: MasterRunner) -> None:
        self.runner = runner
        self._pongs: dict[str, list[tuple[float, float, float]]] = {}

    def on_pong(self, msg: Any, **_: Any) -> None:
        samples = self._pongs.get(msg.node_id)
        if samples is not None:
            samples.append((float(msg.data["sent"]), float(msg.data["clock"]), time.time()))

    def measure(self, workers: list[str], bound_s: float) -> list[WorkerClock]:
        """CLOCK_ROUNDS round trips to every worker at once; each worker's offset from its shortest one."""
        runner = self.runner
        self._pongs = {node: [] for node in workers}
        for round_no in range(CLOCK_ROUNDS):
            for node in workers:
                runner.send_message(MSG_PING, {"seq": round_no, "sent": time.time()}, client_id=node)
            deadline = time.time() + CLOCK_ROUND_WAIT_S
            while time.time() < deadline and any(len(samples) <= round_no for samples in self._pongs.values()):
                gevent.sleep(0.001)
        clocks = []
        for index, node in enumerate(workers):
            reading = estimate_offset(self._pongs[node])
            offset, uncertainty = (0.0, math.inf) if reading is None else (reading.offset_s, reading.uncertainty_s)
            within = abs(offset) <= bound_s and uncertainty <= MAX_CLOCK_UNCERTAINTY_S
            clocks.append(
                WorkerClock(
                    worker=f"worker-{index}",
                    node=node,
                    offset_s=round(offset, 6),
                    uncertainty_s=round(uncertainty, 6) if reading is not None else -1.0,
                    max_offset_s=bound_s,
                    max_uncertainty_s=MAX_CLOCK_UNCERTAINTY_S,
                    within_bound=within,
                )
            )
        self._pongs = {}
        return clocks


def record_clocks(out_dir: Path, clocks: list[WorkerClock], *, append: bool = False) -> None:
    """meta.json gets every worker's measured clock (a plain run's meta.json is written just before); `append`:
    a worker that joined later."""
    try:
        meta = read_meta(out_dir)
    except RunFolderError:
        return
    write_json(
        RunFolder(out_dir).meta, meta.model_copy(update={"clocks": [*meta.clocks, *clocks] if append else clocks})
    )
