"""Locust's master (`--master`, `--processes`, `surge run --hosts`): the leader whose workers generate the load.

At test start it measures every worker's clock (clocks.py), refuses the run if one is off, then sends each
its share in MSG_START. It merges their MSG_WINDOWS deltas and writes their MSG_HISTORY batches into the run
folder, acknowledging each so the worker's send window moves. A worker that connects mid-run takes a share of
the arrivals still to come (the others narrow theirs from the same instant, MSG_SHARE); one Locust marks
missing before its final delta is lost, its unreported arrivals counted dropped (shares.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import gevent
from hdrh.histogram import HdrHistogram
from locust.env import Environment
from locust.runners import STATE_MISSING, MasterRunner

from errortext.console_text import one_line
from loadtests.generator.recording.clocks import ClockCheck, record_clocks
from loadtests.generator.recording.leader import OnFinished, OnWindows, RunLeader
from loadtests.generator.recording.process import StartGenerator
from loadtests.generator.recording.protocol import (
    FINAL_WAIT_S,
    MSG_HISTORY,
    MSG_HISTORY_ACK,
    MSG_PONG,
    MSG_SHARE,
    MSG_START,
    MSG_STOP,
    MSG_WINDOWS,
    RunSettings,
)
from loadtests.generator.recording.shares import Epochs, seconds_of_share, unreported
from loadtests.generator.stream import BACKLOG_WARN_BYTES
from loadtests.generator.windows import Window
from loadtests.scenario.files import load_scenario
from runfolder.layout import RunFolder, write_json
from runfolder.models import LostWorker, WorkerClock
from runfolder.verdict import ExitCode

RESHARE_LEAD_S = 2.0  # a worker that joins takes arrivals from this long after it connected (clock check, start)
STREAMING_S = 2.0  # a history batch this recent: the workers are still draining their spools
log = logging.getLogger("surge")


class MasterRecording(RunLeader):
    """The run folder's writer for the workers' deltas and history; their clocks, shares and losses."""

    def __init__(
        self,
        environment: Environment,
        runner: MasterRunner,
        start_generator: StartGenerator,
        *,
        on_windows: OnWindows | None = None,
        on_finished: OnFinished | None = None,
    ) -> None:
        super().__init__(environment, start_generator, on_windows=on_windows, on_finished=on_finished)
        self.runner = runner
        self._clocks = ClockCheck(runner)
        self._nodes: list[str] = []  # the workers by index
        self._heard: dict[int, float] = {}  # worker index → when the master last heard from it
        self._reported: dict[int, dict[int, list[int]]] = {}  # index → second → [offered, sent, dropped] it reported
        self._lost: set[int] = set()
        self._epochs: dict[int, Epochs] = {}  # index → its shares: (from_s, index, count)
        self._last_history = 0.0  # when the master last received a history batch
        self._backlog_warned = False
        runner.register_message(MSG_WINDOWS, self._on_windows_message)
        runner.register_message(MSG_PONG, self._clocks.on_pong)
        runner.register_message(MSG_HISTORY, self._on_history)
        environment.events.worker_connect.add_listener(self._on_worker_connect)  # type: ignore[no-untyped-call]

    def worker_count(self) -> int:
        return len(self.runner.clients)

    def _prepare(self, settings: RunSettings) -> dict[str, float] | None:
        workers = sorted(self.runner.clients.keys())
        clocks = self._clocks.measure(workers, settings.max_clock_offset_s)
        record_clocks(Path(settings.out_dir), clocks)
        refused = [clock for clock in clocks if not clock.within_bound]
        if refused:
            self._refuse(refused[0])
            return None
        return {node: clock.offset_s for node, clock in zip(workers, clocks, strict=True)}

    def _refuse(self, clock: WorkerClock) -> None:
        """One line and exit 3: a worker whose clock cannot be trusted would put its arrivals at the wrong time."""
        log.error("surge: %s", one_line(clock.refusal()))
        self.finished = True
        self.environment.process_exit_code = ExitCode.HARNESS
        gevent.spawn(self.runner.quit)

    def _start_generators(self, settings: RunSettings, offsets: dict[str, float]) -> None:
        workers = sorted(self.runner.clients.keys())
        self._expected_finals = len(workers)
        self._nodes, self._lost, self._reported = workers, set(), {}
        self._heard = dict.fromkeys(range(len(workers)), time.time())
        self._epochs = {index: [(0.0, index, len(workers))] for index in range(len(workers))}
        for index, client_id in enumerate(workers):
            data = {
                "settings": asdict(settings),
                "index": index,
                "count": len(workers),
                "offset_s": offsets.get(client_id, 0.0),
            }
            self.runner.send_message(MSG_START, data, client_id=client_id)

    def _stop_generators(self) -> None:
        for client_id in list(self.runner.clients.keys()):
            self.runner.send_message(MSG_STOP, None, client_id=client_id)

    def _wind_down(self) -> None:
        if not self.finished and self.writer is not None:
            deadline = time.time() + FINAL_WAIT_S
            while len(self._finals) < self._expected_finals and time.time() < deadline:
                gevent.sleep(0.1)

    def _streaming(self, now: float) -> bool:
        return now - self._last_history < STREAMING_S

    def _all_heard(self) -> bool:
        return len(self._finals) + len(self._lost) >= self._expected_finals

    def _watch(self, now: float) -> None:
        """A worker Locust marks missing (3 heartbeats missed) before its final message is lost for good: whatever
        it says later is ignored, and its unreported arrivals are counted dropped (shares.py)."""
        settings, writer = self.settings, self.writer
        if settings is None or writer is None:
            return
        for index, heard in self._heard.items():
            if index in self._finals or index in self._lost:
                continue
            client = self.runner.clients.get(self._nodes[index])
            if client is not None and client.state != STATE_MISSING:
                continue
            self._lost.add(index)
            scenario = load_scenario(settings.scenario_ref).scaled(settings.scale, settings.duration_s)
            due = seconds_of_share(scenario, self._epochs.get(index, [(0.0, index, len(self._nodes))]))
            deltas, dropped = unreported(due, self._reported.get(index, {}))
            writer.merge(deltas)
            lost = LostWorker(
                worker=f"worker-{index}", node=self._nodes[index], at_s=round(heard - settings.t0, 1), dropped=dropped
            )
            writer.lost.append(lost)
            log.error(
                "surge: %s (%s) lost at t = %.0f s (silent for %.0f s): %d of its arrivals counted dropped; the run "
                "is invalid",
                lost.worker,
                one_line(lost.node),
                lost.at_s,
                now - heard,
                dropped,
            )
        if self._lost and self._all_heard():
            self.finish()

    def _on_windows_message(self, msg: Any, **_: Any) -> None:
        data = msg.data
        index = int(data["index"])
        if index in self._lost:
            return  # declared lost: its share is already counted dropped
        self._heard[index] = time.time()
        per_second = self._reported.setdefault(index, {})
        for line in data["windows"]:
            counts = per_second.setdefault(int(line["t"]), [0, 0, 0])
            counts[0] += int(line.get("offered", 0))
            counts[1] += int(line.get("sent", 0))
            counts[2] += int(line.get("dropped", 0))
        history = data.get("history")
        if history is not None and self.writer is not None:
            writer = self.writer
            writer.history_lines[index] = max(writer.history_lines.get(index, 0), int(history["lines"]))
            writer.backlog_max = max(writer.backlog_max, int(history["backlog"]))
            if history.get("unmatched") is not None:
                RunFolder(writer.out_dir).history.mkdir(exist_ok=True)
                write_json(RunFolder(writer.out_dir).unmatched_of(index), history["unmatched"])
            if writer.backlog_max > BACKLOG_WARN_BYTES and not self._backlog_warned:
                self._backlog_warned = True
                log.warning(
                    "surge: the master is %.0f MiB behind worker-%d's history (past its ingestion ceiling): the rows "
                    "wait on the worker's disk and are sent after the last arrival",
                    writer.backlog_max / 2**20,
                    index,
                )
        lag = HdrHistogram.decode(data["lag"].encode("ascii")) if data["lag"] else None
        self._receive(index, [Window.from_json(line) for line in data["windows"]], lag)

    def _on_history(self, msg: Any, **_: Any) -> None:
        """A worker's history batch: written to the run folder, then acknowledged (the worker's window moves)."""
        if self.writer is None or self.finished:
            return  # not acknowledged: the worker counts it as undelivered
        data = msg.data
        if int(data["index"]) in self._lost:
            return
        self._heard[int(data["index"])] = time.time()
        self.writer.history.receive(int(data["index"]), int(data["seq"]), int(data["rows"]), data["data"])
        self._last_history = time.time()
        self.runner.send_message(MSG_HISTORY_ACK, {"seq": data["seq"]}, client_id=msg.node_id)

    def _on_worker_connect(self, client_id: str, **_: Any) -> None:
        """A worker connected while a run is on: once its clock is checked it takes a share of the arrivals still
        to come, from RESHARE_LEAD_S on, and every other live worker narrows its own share from the same instant."""
        settings = self.settings
        if settings is None or self.writer is None or self.finished or client_id in self._nodes:
            return
        if time.time() + RESHARE_LEAD_S >= settings.hard_stop:
            return  # no arrival is left to share
        gevent.spawn(self._admit, client_id)

    def _admit(self, node: str) -> None:
        settings, runner = self.settings, self.runner
        assert settings is not None
        index = len(self._nodes)
        (clock,) = self._clocks.measure([node], settings.max_clock_offset_s)
        clock = clock.model_copy(update={"worker": f"worker-{index}"})
        record_clocks(Path(settings.out_dir), [clock], append=True)
        if not clock.within_bound:
            log.error("surge: %s; it takes no arrivals", one_line(clock.refusal()))
            return
        live = [i for i in range(len(self._nodes)) if i not in self._finals and i not in self._lost]
        count = len(live) + 1
        from_s = max(0.0, time.time() + RESHARE_LEAD_S - settings.t0)
        self._nodes.append(node)
        self._heard[index] = time.time()
        self._expected_finals += 1
        for share, worker in enumerate(live):
            self._epochs[worker].append((from_s, share, count))
            runner.send_message(
                MSG_SHARE, {"from_s": from_s, "index": share, "count": count}, client_id=self._nodes[worker]
            )
        self._epochs[index] = [(from_s, count - 1, count)]
        data: dict[str, Any] = {
            "settings": asdict(replace(settings, from_s=from_s)),
            "index": index,
            "count": count,
            "offset_s": clock.offset_s,
            "share": {"index": count - 1, "count": count},
        }
        runner.send_message(MSG_START, data, client_id=node)
        log.warning(
            "surge: %s (%s) joined at t = %.1f s: it takes share %d of %d of the arrivals from t = %.1f s",
            f"worker-{index}",
            one_line(node),
            time.time() - settings.t0,
            count,
            count,
            from_s,
        )
