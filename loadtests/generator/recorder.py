"""Recording a run across Locust processes: per-process windows and history, merged by the master into the run folder.

    worker (or the lone process)                      master (or the lone process)
    ProcessRecorder ── every second: JSON deltas ──►  RunWriter ── seconds older than CLOSE_LAG_S ──► windows.jsonl
      └─ history/<worker>.csv                           └─ at the end: stragglers rewritten, generator.json

Deltas rather than whole windows travel because merging is associative (windows.py): a worker never has to know
when a second is final, and a late delta is folded into the final rewrite instead of being lost. Messages use
Locust's own worker→master channel (`runner.send_message` / `register_message`), so a multi-machine run needs
no shared disk: a worker spools its history on its own disk and streams it to the master (stream.py), and the
master measures each worker's clock before the start and tells it the offset to correct for.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import gevent
from hdrh.histogram import HdrHistogram
from locust.env import Environment
from locust.runners import STATE_MISSING, MasterRunner, WorkerRunner

from loadtests.generator.abort import AbortGuard
from loadtests.generator.arrivals import RateCurve, arrival_times
from loadtests.generator.health import CpuSampler, LagMeter, assess_generator, new_lag_histogram
from loadtests.generator.history import HistoryWriter
from loadtests.generator.stream import (
    BACKLOG_WARN_BYTES,
    MAX_CLOCK_UNCERTAINTY_S,
    Batch,
    HistorySink,
    HistoryStream,
    estimate_offset,
)
from loadtests.generator.windows import Window, WindowBook
from loadtests.scenario.files import load_scenario
from loadtests.scenario.model import Scenario
from loadtests.scenario.parts import AbortRule
from reports.console_text import one_line
from runfolder.history import Attempt
from runfolder.layout import RunFolderError, write_json
from runfolder.models import GeneratorVerdict, LostWorker, WorkerClock, read_meta
from runfolder.outcomes import ACCEPTED, OutcomeClass
from runfolder.stop import Aborted, StoppedBy, StopRecord, write_stop

MSG_START = "surge_start"  # master → worker: {"settings", "index", "count", "offset_s"}
MSG_WINDOWS = "surge_windows"  # worker → master: {"index", "windows", "lag": final lag hdr | None, "history"}
MSG_STOP = "surge_stop"  # master → worker: the run stopped early; stop generating and send the last delta now
MSG_HISTORY = "surge_history"  # worker → master: {"index", "seq", "rows", "data": zlib CSV lines}
MSG_HISTORY_ACK = "surge_history_ack"  # master → worker: {"seq"} written to the run folder
MSG_PING = "surge_ping"  # master → worker: {"seq", "sent"}: a clock round trip
MSG_SHARE = "surge_share"  # master → worker: {"from_s", "index", "count"}: a worker joined, shares change then
MSG_PONG = "surge_pong"  # worker → master: {"seq", "sent", "clock": the worker's time.time() on receipt}
FLUSH_INTERVAL_S = 1.0
FINAL_AFTER_S = 0.5  # after hard_stop: every process sends its last delta
FINAL_WAIT_S = 5.0  # the master's bound on waiting for the last deltas of every worker
IN_FLIGHT_WAIT_S = 3.0  # a process's bound on waiting for its attempts still in flight before its last delta
CLOSE_TICK_S = 0.5  # the master closes seconds and judges the [[abort]] rules this often
CLOSE_LAG_S = 3  # a second is appended to windows.jsonl this long after it ended (drop bound + flush + transit)
HISTORY_DRAIN_S = 20.0  # after its last attempt, a worker's bound on sending the history still on its disk
HISTORY_TICK_S = 0.05  # a worker sends history batches this often while it has some and the window allows
CLOCK_ROUNDS = 5  # round trips per worker at test start; the shortest one counts
CLOCK_ROUND_WAIT_S = 0.5  # a round without every answer by then moves on
RESHARE_LEAD_S = 2.0  # a worker that joins takes arrivals from this long after it connected (clock check, start)
SPOOL_DIR = "surge-spool"  # under a worker's working directory: its history until the master has it

log = logging.getLogger("surge")


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
        self._path = out_dir / "windows.jsonl"
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
        write_json(self.out_dir / "generator.json", verdict)
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


@dataclass(frozen=True)
class RunSettings:
    """What every generating process must agree on; the master sends it to each worker in MSG_START."""

    scenario_ref: str
    scale: float
    duration_s: float | None
    out_dir: str
    t0: float
    hard_stop: float  # no attempt is recorded after this; the final deltas are sent FINAL_AFTER_S later
    late_ms: float
    expected_offered: float  # the rate curve's integral: what all processes together should offer
    channels: list[str] = field(default_factory=list)  # the bank codes cards are drawn on (read once, by the master)
    target: str = ""  # a target profile's path (docs/targets.md); "" for the built-in API
    abort: bool = True  # judge the scenario's [[abort]] rules (False: --no-abort)
    trace_salt: str = ""  # keys the pseudonyms of a replayed trace's identities; sent to workers, never written
    key_prefix: str = ""  # meta.json's, read by the master: a worker on another host has no run folder
    clock: dict[str, Any] | None = None  # the gateway's anchored clock (ClusterClock), read by the master
    host: str = ""  # the URL the users load: a worker checks it against the loopback guard itself
    max_clock_offset_s: float = 5.0  # a worker whose clock is further off the master's is refused (exit 3)
    from_s: float = 0.0  # a worker that joined late: its arrivals start here (seconds from t=0)


def on_own_clock(settings: RunSettings, offset_s: float) -> RunSettings:
    """The master's settings in the clock of a process `offset_s` ahead of it: the same instants, its numbers."""
    if not offset_s:
        return settings
    clock = settings.clock
    if clock is not None:
        clock = {**clock, "anchor_unix": float(clock["anchor_unix"]) + offset_s}
    return replace(settings, t0=settings.t0 + offset_s, hard_stop=settings.hard_stop + offset_s, clock=clock)


@dataclass(frozen=True)
class Running:
    """A process's generator once started: `stop` it, or `reshare(from_s, index, count)` — from `from_s` (seconds
    from the master's t=0) on, its arrivals are share `index` of `count` (a worker joined)."""

    stop: Callable[[], None]
    reshare: Callable[[float, int, int], None]


# Starts this process's generator on a recorder (share index, share count).
StartGenerator = Callable[[RunSettings, ProcessRecorder, int, int], Running]


class LocustRecording:
    """The recorder's Locust side: roles, the MSG_START / MSG_WINDOWS messages, the greenlets that move windows.

    The end does not depend on Locust's stop messages (a headless master quits without waiting for its
    workers' last words): every process knows `hard_stop`, sends its final delta on its own just after it,
    and the master finishes once every final arrived (or FINAL_WAIT_S later) — then `finished` tells the shape
    to end the test.

    A run stopped before its end (`stop_early`: `surge run` on SIGINT/SIGTERM, which arrives here as Locust's
    SIGTERM shutdown; the web UI's stop button; a tripped `[[abort]]` rule) is recorded first (`write_stop`),
    then every process stops generating at once (MSG_STOP), lets its attempts in flight finish for at most
    IN_FLIGHT_WAIT_S and sends its final delta, exactly as at the planned end.
    """

    def __init__(
        self,
        environment: Environment,
        start_generator: StartGenerator,
        *,
        on_windows: Callable[[list[Window]], None] | None = None,
        on_finished: Callable[[RunSettings], None] | None = None,
    ) -> None:
        self.environment = environment
        self.start_generator = start_generator
        self.on_windows = on_windows  # every delta the master merges (the --metrics-port endpoint)
        self.on_finished = on_finished  # the master, once the run folder's windows and generator.json are complete
        self.settings: RunSettings | None = None
        self.writer: RunWriter | None = None
        self.finished = False
        self.stop: StopRecord | None = None
        self._expected_finals = 0
        self._finals: set[int] = set()
        self._local_stop: Callable[[], None] | None = None
        runner = environment.runner
        self._pongs: dict[str, list[tuple[float, float, float]]] = {}
        self._nodes: list[str] = []  # the master's workers by index
        self._heard: dict[int, float] = {}  # worker index → when the master last heard from it
        self._reported: dict[int, dict[int, list[int]]] = {}  # index → second → [offered, sent, dropped] it reported
        self._lost: set[int] = set()
        self._epochs: dict[int, list[tuple[float, int, int]]] = {}  # index → its shares: (from_s, index, count)
        self._running: Running | None = None
        self._stream: HistoryStream | None = None
        self._last_history = 0.0  # when the master last received a history batch
        self._backlog_warned = False
        if isinstance(runner, WorkerRunner):
            runner.register_message(MSG_START, self._on_start_message)
            runner.register_message(MSG_STOP, self._on_stop_message)
            runner.register_message(MSG_PING, self._on_ping)
            runner.register_message(MSG_HISTORY_ACK, self._on_history_ack)
            runner.register_message(MSG_SHARE, self._on_share)
        elif isinstance(runner, MasterRunner):
            runner.register_message(MSG_WINDOWS, self._on_windows_message)
            runner.register_message(MSG_PONG, self._on_pong)
            runner.register_message(MSG_HISTORY, self._on_history)
            environment.events.worker_connect.add_listener(self._on_worker_connect)  # type: ignore[no-untyped-call]
        options = environment.parsed_options
        if not isinstance(runner, WorkerRunner) and options is not None and options.headless:
            # Headless with a shape, Locust installs its own SIGTERM handler only once the shape has ended
            # (locust/main.py): until then SIGTERM — how `surge run` stops it — would kill it, recording nothing;
            # and its Ctrl-C ends the test without a word of why. Both become an early end like any other.
            gevent.signal_handler(signal.SIGTERM, lambda: gevent.spawn(self._on_signal, "sigterm"))
            gevent.signal_handler(signal.SIGINT, lambda: gevent.spawn(self._on_signal, "sigint"))
        # Locust's EventHook.add_listener carries no type hints.
        environment.events.test_stopping.add_listener(self._on_test_stopping)  # type: ignore[no-untyped-call]
        environment.events.test_stop.add_listener(self._on_test_stop)  # type: ignore[no-untyped-call]
        environment.events.quitting.add_listener(self._on_test_stop)  # type: ignore[no-untyped-call]

    # master or lone process ------------------------------------------------------------------------------

    def begin(self, settings: RunSettings) -> None:
        """At test start on the master (or the lone process): open the run folder and start every generator."""
        self.settings = settings
        self.finished = False
        self.stop = None
        self._finals.clear()
        runner = self.environment.runner
        offsets: dict[str, float] = {}
        if isinstance(runner, MasterRunner):
            workers = sorted(runner.clients.keys())
            clocks = self._measure_clocks(runner, workers, settings.max_clock_offset_s)
            _record_clocks(Path(settings.out_dir), clocks)
            refused = [clock for clock in clocks if not clock.within_bound]
            if refused:
                self._refuse(refused[0])
                return
            offsets = {node: clock.offset_s for node, clock in zip(workers, clocks, strict=True)}
        rules = load_scenario(settings.scenario_ref).abort if settings.abort else ()
        self.writer = RunWriter(Path(settings.out_dir), settings.t0, rules)
        if isinstance(runner, MasterRunner):
            workers = sorted(runner.clients.keys())
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
                runner.send_message(MSG_START, data, client_id=client_id)
        else:
            self._expected_finals = 1
            self._run_process(settings, 0, (0, 1), lambda windows, lag: self._receive(0, windows, lag))
        gevent.spawn(self._close_loop)

    def _close_loop(self) -> None:
        settings, writer = self.settings, self.writer
        assert settings is not None and writer is not None
        deadline = settings.hard_stop + FINAL_AFTER_S + FINAL_WAIT_S
        while self.writer is writer and not self.finished and self._still_waiting(deadline):
            gevent.sleep(CLOSE_TICK_S)
            now = time.time()
            if now >= settings.t0:
                writer.sample_own_cpu(now)
            writer.close_before(now)
            self._find_lost(now)
            trip = writer.guard.check(now - settings.t0) if self.stop is None else None
            if trip is not None:
                rule = trip.rule.describe()
                log.error("surge: aborted at t = %.0f s: %s (value %g)", trip.at_s, one_line(rule), trip.value)
                self.stop_early(
                    "abort", f"abort rule {rule} tripped", Aborted(rule=rule, at_s=trip.at_s, value=trip.value)
                )
        if self.writer is writer:
            self.finish()

    def _still_waiting(self, deadline: float) -> bool:
        """Before `deadline`, or after it while workers still stream history (up to their own drain bound)."""
        now = time.time()
        if now < deadline:
            return True
        streaming = now - self._last_history < 2.0
        return streaming and now < deadline + IN_FLIGHT_WAIT_S + HISTORY_DRAIN_S

    def _find_lost(self, now: float) -> None:
        """A worker Locust marks missing (3 heartbeats missed) before its final message is lost for good: whatever
        it says later is ignored, and every arrival of its share it never reported sent is counted dropped in its
        own second, so that offered = sent + dropped still holds and the run is invalid (the gateway did not get
        its load). Dropped, not re-assigned: the others' users are sized for their own share, and arrivals moved
        to them seconds late would be late anyway."""
        settings, writer, runner = self.settings, self.writer, self.environment.runner
        if settings is None or writer is None or not isinstance(runner, MasterRunner):
            return
        for index, heard in self._heard.items():
            if index in self._finals or index in self._lost:
                continue
            client = runner.clients.get(self._nodes[index])
            if client is not None and client.state != STATE_MISSING:
                continue
            self._lost.add(index)
            scenario = load_scenario(settings.scenario_ref).scaled(settings.scale, settings.duration_s)
            due = seconds_of_share(scenario, self._epochs.get(index, [(0.0, index, len(self._nodes))]))
            reported = self._reported.get(index, {})
            deltas, dropped = [], 0
            for t in sorted(set(due) | set(reported)):
                offered, sent, gone = reported.get(t, [0, 0, 0])
                delta = Window(t)
                delta.offered = due.get(t, 0) - offered
                delta.dropped = due.get(t, 0) - sent - gone
                if delta.offered or delta.dropped:
                    deltas.append(delta)
                    dropped += delta.dropped
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
        if self._lost and len(self._finals) + len(self._lost) >= self._expected_finals:
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
                (writer.out_dir / "history").mkdir(exist_ok=True)
                write_json(writer.out_dir / "history" / f"worker-{index}.unmatched.json", history["unmatched"])
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
        runner = self.environment.runner
        assert runner is not None
        runner.send_message(MSG_HISTORY_ACK, {"seq": data["seq"]}, client_id=msg.node_id)

    def _measure_clocks(self, runner: MasterRunner, workers: list[str], bound_s: float) -> list[WorkerClock]:
        """CLOCK_ROUNDS round trips to every worker at once; each worker's offset from its shortest one."""
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
        settings, runner = self.settings, self.environment.runner
        assert settings is not None and isinstance(runner, MasterRunner)
        index = len(self._nodes)
        (clock,) = self._measure_clocks(runner, [node], settings.max_clock_offset_s)
        clock = clock.model_copy(update={"worker": f"worker-{index}"})
        _record_clocks(Path(settings.out_dir), [clock], append=True)
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

    def _on_pong(self, msg: Any, **_: Any) -> None:
        samples = self._pongs.get(msg.node_id)
        if samples is not None:
            samples.append((float(msg.data["sent"]), float(msg.data["clock"]), time.time()))

    def _refuse(self, clock: WorkerClock) -> None:
        """One line and exit 3: a worker whose clock cannot be trusted would put its arrivals at the wrong time."""
        log.error("surge: %s", one_line(clock.refusal()))
        self.finished = True
        self.environment.process_exit_code = 3
        runner = self.environment.runner
        assert runner is not None
        gevent.spawn(runner.quit)

    def _receive(self, index: int, windows: list[Window], lag: HdrHistogram | None) -> None:
        """A process's delta; with `lag` (its whole run's wake-up lateness) it is that process's last one."""
        if self.writer is None or self.finished:
            return
        self.writer.merge(windows)
        if self.on_windows is not None:
            self.on_windows(windows)
        if lag is not None:
            self.writer.lag.add(lag)
            self._finals.add(index)
            if len(self._finals) + len(self._lost) >= self._expected_finals:
                self.finish()

    def finish(self) -> None:
        """Write windows.jsonl's last seconds and generator.json once; log the summary (Locust's console and its
        web UI's Logs tab both show the "surge" logger), loudly if the generator was the bottleneck."""
        if self.finished or self.writer is None or self.settings is None:
            return
        self.finished = True
        expected = self.settings.expected_offered
        if self.stop is not None:  # only what was due before the stop could have been offered
            settings = self.settings
            scenario = load_scenario(settings.scenario_ref).scaled(settings.scale, settings.duration_s)
            expected = RateCurve(scenario.breakpoints()).cumulative(max(0.0, self.stop.at_s))
        verdict = self.writer.finish(self.settings.t0, expected, stopped=self.stop is not None)
        for line in summary_lines(self.writer, verdict):
            log.info("%s", line)
        if not verdict.valid:
            log.error("surge: run invalid: %s", "; ".join(verdict.reasons))
        if self.on_finished is not None:
            self.on_finished(self.settings)

    def stop_early(self, by: StoppedBy, reason: str, aborted: Aborted | None = None) -> None:
        """Record the stop (the first record wins), stop every generator, wait for the last deltas, finish."""
        settings = self.settings
        if settings is None or self.finished or self.stop is not None or time.time() >= settings.hard_stop:
            return
        now = time.time()
        record = StopRecord(at_unix=now, at_s=round(now - settings.t0, 3), by=by, reason=reason, aborted=aborted)
        self.stop = write_stop(Path(settings.out_dir), record)
        stop = self.stop
        log.warning("surge: run stopped at t = %.1f s by %s: %s", stop.at_s, stop.by, one_line(stop.reason))
        runner = self.environment.runner
        if isinstance(runner, MasterRunner):
            for client_id in list(runner.clients.keys()):
                runner.send_message(MSG_STOP, None, client_id=client_id)
        elif self._local_stop is not None:
            self._local_stop()  # the lone process: its final delta finishes the recording
        deadline = time.time() + IN_FLIGHT_WAIT_S + FINAL_WAIT_S
        while not self.finished and len(self._finals) < self._expected_finals and time.time() < deadline:
            gevent.sleep(0.1)
        self.finish()

    def _on_signal(self, by: StoppedBy) -> None:
        """An early end like any other (the shape then ends the test); a second signal, or one without a test
        running, quits at once."""
        if self.settings is None or self.finished or self.stop is not None:
            runner = self.environment.runner
            if runner is not None:
                runner.quit()
            return
        self.stop_early(by, "interrupted (SIGINT, Ctrl-C)" if by == "sigint" else "Locust received SIGTERM")

    def _on_test_stopping(self, **_: Any) -> None:
        """Locust stops the test before the recording finished: a stop in the web UI (or Locust's own)."""
        if isinstance(self.environment.runner, WorkerRunner):
            if self._local_stop is not None:
                gevent.spawn(self._local_stop)
            return
        if self.environment.web_ui is not None:
            self.stop_early("web-ui", "stopped in Locust's web UI")
        else:
            self.stop_early("sigterm", "Locust stopped the test before the scenario's end")

    def _on_test_stop(self, **_: Any) -> None:
        self.end()

    def end(self) -> None:
        """Stopped early (web UI, --run-time) or quitting: stop generating, send or wait for the last deltas.

        Idempotent. Quitting before the end is Locust's SIGTERM: `surge run` recorded why in stop.json before
        sending it. Afterwards the recording is ready for the next test of a web UI session (settings None).
        """
        if not isinstance(self.environment.runner, WorkerRunner):
            self.stop_early("sigterm", "Locust received SIGTERM")
        if self._local_stop is not None:
            self._local_stop()
        if isinstance(self.environment.runner, MasterRunner) and not self.finished and self.writer is not None:
            deadline = time.time() + FINAL_WAIT_S
            while len(self._finals) < self._expected_finals and time.time() < deadline:
                gevent.sleep(0.1)
        self.finish()
        self.settings = None
        self.writer = None

    # every generating process ----------------------------------------------------------------------------

    def _on_stop_message(self, msg: Any, **_: Any) -> None:
        if self._local_stop is not None:
            gevent.spawn(self._local_stop)

    def _on_ping(self, msg: Any, **_: Any) -> None:
        runner = self.environment.runner
        assert runner is not None
        runner.send_message(MSG_PONG, {"seq": msg.data["seq"], "sent": msg.data["sent"], "clock": time.time()})

    def _on_share(self, msg: Any, **_: Any) -> None:
        if self._running is not None:
            data = msg.data
            self._running.reshare(float(data["from_s"]), int(data["index"]), int(data["count"]))

    def _on_history_ack(self, msg: Any, **_: Any) -> None:
        if self._stream is not None:
            self._stream.ack(int(msg.data["seq"]))

    def _on_start_message(self, msg: Any, **_: Any) -> None:
        data = msg.data
        offset_s = float(data.get("offset_s", 0.0))
        settings = on_own_clock(RunSettings(**data["settings"]), offset_s)
        runner = self.environment.runner
        assert runner is not None
        index = int(data["index"])
        spool = Path(SPOOL_DIR).resolve() / f"{Path(settings.out_dir).name}-worker-{index}.csv"
        stream = self._stream = HistoryStream(spool)

        def send(windows: list[Window], lag: HdrHistogram | None) -> None:
            lines = [window.to_json() for window in windows]
            encoded = lag.encode().decode("ascii") if lag is not None else None
            history: dict[str, Any] = {"lines": recorder_lines(), "backlog": stream.backlog_bytes()}
            if recorder.sample is not None:
                history["unmatched"], recorder.sample = recorder.sample, None
            runner.send_message(MSG_WINDOWS, {"index": index, "windows": lines, "lag": encoded, "history": history})

        def send_batch(batch: Batch) -> None:
            data = {"index": index, "seq": batch.seq, "rows": batch.rows, "data": batch.data}
            runner.send_message(MSG_HISTORY, data)

        share = data.get("share") or {"index": index, "count": int(data["count"])}
        recorder = self._run_process(
            settings, index, (int(share["index"]), int(share["count"])), send, spool, offset_s, stream, send_batch
        )

        def recorder_lines() -> int:
            writer = recorder.history
            return 0 if writer is None else writer.written + 1  # the header is a line of the file too

    def _run_process(
        self,
        settings: RunSettings,
        index: int,
        share: tuple[int, int],
        send: Callable[[list[Window], HdrHistogram | None], None],
        history: Path | None = None,
        offset_s: float = 0.0,
        stream: HistoryStream | None = None,
        send_batch: Callable[[Batch], None] | None = None,
    ) -> ProcessRecorder:
        """Start this process's generator; `stream`: its history is spooled at `history` and sent to the master
        by `send_batch` (a worker), else written into the run folder (the lone process)."""
        if self._local_stop is not None:
            self._local_stop()  # a new test in the web UI: the previous one's generator ends here
        if history is None:
            history = Path(settings.out_dir) / "history" / f"worker-{index}.csv"
        recorder = ProcessRecorder(settings.t0, history, settings.late_ms, offset_s)
        if stream is not None:
            recorder.sample_path = None  # the master writes it into the run folder
        running = self._running = self.start_generator(settings, recorder, *share)
        state = {"done": False, "final": False}

        def stream_history() -> None:
            assert stream is not None and send_batch is not None
            while not state["final"]:
                batch = stream.next_batch()
                if batch is None:
                    gevent.sleep(HISTORY_TICK_S)
                else:
                    send_batch(batch)
                    gevent.sleep(0)

        def last_words() -> None:
            if state["done"]:
                return
            state["done"] = True
            running.stop()
            deadline = time.time() + IN_FLIGHT_WAIT_S
            while recorder.in_flight > 0 and time.time() < deadline:
                gevent.sleep(0.05)
            recorder.close()  # before the last delta: the master may read history/ as soon as it has every final
            if stream is not None:
                deadline = time.time() + HISTORY_DRAIN_S
                while not stream.delivered() and time.time() < deadline:
                    gevent.sleep(HISTORY_TICK_S)
            send(recorder.take_delta(), recorder.lag.samples)
            state["final"] = True
            if stream is not None:
                stream.close()
                if stream.delivered():
                    stream.path.unlink(missing_ok=True)
                    with contextlib.suppress(OSError):
                        stream.path.parent.rmdir()  # the spool directory, once no run of this worker needs it
                else:
                    log.error(
                        "surge: %d bytes of history did not reach the master; they stay in %s",
                        stream.backlog_bytes(),
                        one_line(stream.path),
                    )

        def loop() -> None:
            final_at = settings.hard_stop + FINAL_AFTER_S
            tick = time.time()
            while True:
                tick += FLUSH_INTERVAL_S
                gevent.sleep(max(0.0, min(tick, final_at) - time.time()))
                now = time.time()
                if now >= final_at:
                    break
                if now >= settings.t0:
                    recorder.sample_health(now)
                if stream is not None and recorder.history is not None:
                    recorder.history.flush()  # what the stream sends is what reached the spool file
                send(recorder.take_delta(), None)
                if state["done"]:
                    return
            last_words()

        self._local_stop = last_words
        gevent.spawn(loop)
        if stream is not None:
            gevent.spawn(stream_history)
        return recorder


def seconds_of_share(scenario: Scenario, epochs: list[tuple[float, int, int]]) -> Counter[int]:
    """How many arrivals a worker has in each second of the run, from its shares — (from_s, index, count), each
    until the next one begins: the same split the workers themselves draw (arrivals.arrival_times, or a
    trace's schedule, which is never re-shared)."""
    found: Counter[int] = Counter()
    for number, (start, index, count) in enumerate(epochs):
        end = epochs[number + 1][0] if number + 1 < len(epochs) else math.inf
        replay = scenario.replay()
        if replay is not None:
            times: Iterable[float] = replay.schedule(index, count).t_s.tolist()
        else:
            process = scenario.arrivals.process
            assert process != "trace"
            curve = RateCurve(scenario.breakpoints())
            times = arrival_times(curve, process, seed=scenario.seed, worker_index=index, worker_count=count)
        found.update(math.floor(t) for t in times if start <= t < end)
    return found


def _record_clocks(out_dir: Path, clocks: list[WorkerClock], *, append: bool = False) -> None:
    """meta.json gets every worker's measured clock (a plain run's meta.json is written just before); `append`:
    a worker that joined later."""
    try:
        meta = read_meta(out_dir)
    except RunFolderError:
        return
    write_json(out_dir / "meta.json", meta.model_copy(update={"clocks": [*meta.clocks, *clocks] if append else clocks}))
