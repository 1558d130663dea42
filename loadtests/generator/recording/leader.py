"""The recording on the process that owns the run folder: Locust's master, or the lone process (local.py).

It opens the folder at test start, merges every delta into windows.jsonl as seconds close, judges the live
[[abort]] rules, and finishes — generator.json and the console summary — once every process sent its final
delta (or FINAL_WAIT_S later); `finished` then tells the shape to end the test. A run stopped before its end
(`stop_early`: `surge run` on SIGINT/SIGTERM, which arrives here as Locust's SIGTERM shutdown; the web UI's stop
button; a tripped `[[abort]]` rule) is recorded first (`write_stop`), then every process stops generating at
once, lets its attempts in flight finish for at most IN_FLIGHT_WAIT_S and sends its final delta, exactly as at
the planned end. What differs between the two roles — where the generators run — is the subclasses' own.
"""

from __future__ import annotations

import logging
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
from hdrh.histogram import HdrHistogram
from locust.env import Environment

from errortext.console_text import one_line
from loadtests.generator.arrivals import RateCurve
from loadtests.generator.recording.process import StartGenerator
from loadtests.generator.recording.protocol import (
    FINAL_AFTER_S,
    FINAL_WAIT_S,
    HISTORY_DRAIN_S,
    IN_FLIGHT_WAIT_S,
    RunSettings,
)
from loadtests.generator.recording.writer import RunWriter, summary_lines
from loadtests.generator.windows import Window
from loadtests.scenario.files import load_scenario
from runfolder.stop import Aborted, StoppedBy, StopRecord, write_stop

CLOSE_TICK_S = 0.5  # the leader closes seconds and judges the [[abort]] rules this often
log = logging.getLogger("surge")

OnWindows = Callable[[list[Window]], None]  # every delta merged (the --metrics-port endpoint)
OnFinished = Callable[[RunSettings], None]  # once the run folder's windows and generator.json are complete


class RunLeader(ABC):
    """What the master and the lone process share: the run folder's writer, the end of the run, early stops."""

    def __init__(
        self,
        environment: Environment,
        start_generator: StartGenerator,
        *,
        on_windows: OnWindows | None = None,
        on_finished: OnFinished | None = None,
    ) -> None:
        self.environment = environment
        self.start_generator = start_generator
        self.on_windows = on_windows
        self.on_finished = on_finished
        self.settings: RunSettings | None = None
        self.writer: RunWriter | None = None
        self.finished = False
        self.stop: StopRecord | None = None
        self._expected_finals = 0
        self._finals: set[int] = set()
        options = environment.parsed_options
        if options is not None and options.headless:
            # Headless with a shape, Locust installs its own SIGTERM handler only once the shape has ended
            # (locust/main.py): until then SIGTERM — how `surge run` stops it — would kill it, recording nothing;
            # and its Ctrl-C ends the test without a word of why. Both become an early end like any other.
            gevent.signal_handler(signal.SIGTERM, lambda: gevent.spawn(self._on_signal, "sigterm"))
            gevent.signal_handler(signal.SIGINT, lambda: gevent.spawn(self._on_signal, "sigint"))
        # Locust's EventHook.add_listener carries no type hints.
        environment.events.test_stopping.add_listener(self._on_test_stopping)  # type: ignore[no-untyped-call]
        environment.events.test_stop.add_listener(self._on_test_stop)  # type: ignore[no-untyped-call]
        environment.events.quitting.add_listener(self._on_test_stop)  # type: ignore[no-untyped-call]

    # what the roles do their own way ---------------------------------------------------------------------

    @abstractmethod
    def worker_count(self) -> int:
        """The processes generating besides this one (they share t=0's lead)."""

    @abstractmethod
    def _prepare(self, settings: RunSettings) -> dict[str, float] | None:
        """Before the run folder's writer opens: each worker's clock offset by node, or None when refused."""

    @abstractmethod
    def _start_generators(self, settings: RunSettings, offsets: dict[str, float]) -> None:
        """Start every generator of the run and set how many final deltas to wait for."""

    @abstractmethod
    def _stop_generators(self) -> None:
        """The run stopped early: every generator stops now and sends its final delta."""

    @abstractmethod
    def _wind_down(self) -> None:
        """At the end of a test (or quitting), after `stop_early`: what remains before `finish`."""

    @abstractmethod
    def _watch(self, now: float) -> None:
        """Every CLOSE_TICK_S while the run is recorded (the master looks for lost workers)."""

    def _streaming(self, now: float) -> bool:
        """Whether workers are still sending history (the master waits for it past the deadline)."""
        return False

    def _all_heard(self) -> bool:
        """Every generating process has sent its final delta."""
        return len(self._finals) >= self._expected_finals

    # the run ----------------------------------------------------------------------------------------------

    def begin(self, settings: RunSettings) -> None:
        """At test start: open the run folder and start every generator."""
        self.settings = settings
        self.finished = False
        self.stop = None
        self._finals.clear()
        offsets = self._prepare(settings)
        if offsets is None:
            return
        rules = load_scenario(settings.scenario_ref).abort if settings.abort else ()
        self.writer = RunWriter(Path(settings.out_dir), settings.t0, rules)
        self._start_generators(settings, offsets)
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
            self._watch(now)
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
        return self._streaming(now) and now < deadline + IN_FLIGHT_WAIT_S + HISTORY_DRAIN_S

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
            if self._all_heard():
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
        self._stop_generators()
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
        self.stop_early("sigterm", "Locust received SIGTERM")
        self._wind_down()
        self.finish()
        self.settings = None
        self.writer = None
