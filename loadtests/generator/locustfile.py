"""The generator's Locust entry point: the user class, the shape and the event hooks Locust calls.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8080 --scenario double11            (web UI)
    locust -f loadtests/locustfile.py --host http://127.0.0.1:8080 --scenario double11 --headless --processes 2
    locust -f loadtests/locustfile.py --target examples/acme/target.toml --scenario double11 --headless  (§7)

loadtests/locustfile.py, the path users and `surge run` give Locust, only imports this module. The shape spawns
the scenario's user pool at once and ends the test by itself once every process has sent its last windows;
arrivals come from driver.Generator, not from Locust's user count (open model). At init the role is picked
once (recording/: worker, master or the lone process). A plain run ends with surge's verdict (plain_run.py);
`surge run` passes `--surge-managed` because it analyses the folder itself. `locust --help` cannot list
surge's options (options.py; Locust prints its help before it loads a locustfile): README "Plain Locust" does.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import gevent
from locust import LoadTestShape, User, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from errortext.console_text import one_line
from loadtests.errors import UsageError
from loadtests.generator.driver import Generator, Ticket
from loadtests.generator.options import add_options, check_host, profile_of, scenario_of
from loadtests.generator.payer import Payer
from loadtests.generator.plain_run import finish_plain_run
from loadtests.generator.recording.leader import RunLeader
from loadtests.generator.recording.local import LocalRecording
from loadtests.generator.recording.master import MasterRecording
from loadtests.generator.recording.protocol import (
    FINAL_AFTER_S,
    FINAL_WAIT_S,
    HISTORY_DRAIN_S,
    IN_FLIGHT_WAIT_S,
    Running,
    RunSettings,
)
from loadtests.generator.recording.recorder import ProcessRecorder
from loadtests.generator.recording.worker import WorkerRecording
from loadtests.generator.settings import run_settings
from loadtests.generator.start import start_generator
from loadtests.generator.transport import Transport
from loadtests.scenario.cluster_only import ignored_warnings
from loadtests.scenario.profile_answers import MAX_BODY_BYTES
from mock_gateway.lifeline import die_with_parent
from runfolder.verdict import ExitCode

if TYPE_CHECKING:
    from loadtests.generator import live_metrics

NOT_STARTED_NAP_S = 0.2  # before this process's generator exists, a user looks again this often
IDLE_WAIT_S = 2.0  # a user with nothing to claim waits this long for a deferred ticket; short would cost CPU
log = logging.getLogger("surge")


class RepayingUser(User):
    """A member of the bounded pool: claims the next arrival, sleeps until its time, pays it (payer.Payer).

    The sleep is Locust's own wait: `wait_time` claims the ticket the next `repay` pays, so a user costs one
    timer per arrival, as a paced closed-loop user does. The users share the process's connections (transport.py).
    """

    generator: Generator | None = None
    _ticket: Ticket | None = None
    _slept: bool = False  # whether the user slept until its ticket's time: only then is a late wake-up lag

    def wait_time(self) -> float:
        generator = RepayingUser.generator
        if generator is None:
            return NOT_STARTED_NAP_S  # this process has not been told to start yet
        self._ticket = generator.claim()
        wait = 0.0 if self._ticket is None else self._ticket.intended - time.time()
        self._slept = wait > 0
        return max(0.0, wait)

    def on_stop(self) -> None:
        """Locust stops this user (a worker joined and the users were rebalanced, or the test ends): an arrival
        it held goes to the next free user instead of vanishing between offered and sent."""
        generator = RepayingUser.generator
        ticket, self._ticket = self._ticket, None
        if generator is not None and ticket is not None:
            generator.release(ticket)

    @task
    def repay(self) -> None:
        generator = RepayingUser.generator
        if generator is None:
            return
        if self._ticket is None:  # the first task runs before the first wait; an idle user lands here too
            gevent.sleep(self.wait_time())
            if self._ticket is None:
                generator.idle(IDLE_WAIT_S)
                return
        ticket, self._ticket = self._ticket, None
        now = time.time()
        if self._slept:
            generator.recorder.lag.record(max(0.0, now - ticket.intended) * 1000.0)
        if generator.begin(ticket, now):
            transport = generator.transport
            if transport is None:
                client, events = generator.scenario.client, self.environment.events
                pool = generator.scenario.arrivals.pool
                target = generator.target
                max_body = MAX_BODY_BYTES if target is None else target.profile.response.max_body_bytes
                transport = generator.transport = Transport(
                    self.host or "", client.timeout_s, pool, events.request, max_body, generator.tls_context
                )
            Payer(generator, transport).pay(ticket)


class FestivalShape(LoadTestShape):
    """The whole pool at once, until the recording says the run is over (or its bound has passed)."""

    recording: RunLeader | None = None  # the master's or the lone process's; a worker runs no shape
    _pools: ClassVar[dict[tuple[str, float, float], int]] = {}  # ticked every second: parse the TOML once

    def tick(self) -> tuple[int, float] | None:
        recording = FestivalShape.recording
        settings = recording.settings if recording is not None else None
        if recording is not None and settings is not None:
            bound = FINAL_AFTER_S + FINAL_WAIT_S + IN_FLIGHT_WAIT_S + HISTORY_DRAIN_S + 1.0  # workers still streaming
            overdue = time.time() > settings.hard_stop + bound
            if recording.finished or overdue:
                return None
        assert self.runner is not None
        options = self.runner.environment.parsed_options
        assert options is not None
        key = (options.scenario, options.scale, options.surge_duration)
        pool = self._pools.get(key)
        if pool is None:
            try:
                pool = self._pools[key] = scenario_of(options).arrivals.pool
            except UsageError as exc:  # typed into the web UI's form: one line in its Logs tab, the test stops
                log.error("surge: %s", one_line(exc))
                return None
        return pool, float(pool)


def _on_init(environment: Environment, **_: Any) -> None:
    """Pick this process's role once: a worker generates on the master's word; a master or the lone process
    checks surge's options (exit 2 on a bad one) and leads the recording."""
    options = environment.parsed_options
    assert options is not None
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        if getattr(options, "processes", None):
            die_with_parent(os.getppid())  # forked by a --processes master: no worker outlives it, even on SIGKILL
        _skew_clock_for_tests()
        _read_ahead(options)
        WorkerRecording(environment, runner, _start_generator)  # kept by the message handlers it registers
        return
    metrics = _check_options(environment, options)
    plain = _PlainEnd(environment) if not options.surge_managed else None
    on_windows = metrics.add if metrics is not None else None
    on_finished = plain.on_finished if plain is not None else None
    if isinstance(runner, MasterRunner):
        leader: RunLeader = MasterRecording(
            environment, runner, _start_generator, on_windows=on_windows, on_finished=on_finished
        )
    else:
        leader = LocalRecording(environment, _start_generator, on_windows=on_windows, on_finished=on_finished)
    FestivalShape.recording = leader
    if plain is not None:
        environment.events.quitting.add_listener(plain.on_quitting)  # type: ignore[no-untyped-call]


def _check_options(environment: Environment, options: Any) -> live_metrics.LiveMetrics | None:
    """The leader's options, checked before any test (exit 2 and one line on a bad one); the metrics endpoint."""
    try:
        if getattr(options, "ips", None):  # locust-plugins' constant-rate option, when it is loaded
            raise UsageError(
                "--ips (locust-plugins) replaces surge's arrival schedule and would send nothing; "
                "set the rate in the scenario's [[rate]] or with --scale"
            )
        scenario = scenario_of(options)
        if not options.surge_managed:  # `surge run` applies them, or warns as plain Locust does here
            for warning in ignored_warnings(scenario, "by plain Locust (`surge run` starts that cluster)"):
                log.warning("surge: warning: %s", one_line(warning))
        if options.target:  # its base_url is the host unless --host overrides it
            environment.host = options.host = profile_of(options.target, environment.host or None).base_url
        if environment.host:
            check_host(environment.host)
        return _serve_metrics(options.metrics_port) if options.metrics_port else None
    except UsageError as exc:
        print(f"surge: {one_line(exc)}", file=sys.stderr)
        sys.exit(ExitCode.USAGE)


def _skew_clock_for_tests() -> None:
    """TEST ONLY: `SURGE_TEST_CLOCK_OFFSET_S` puts this worker's wall clock that many seconds ahead of the host's
    (negative: behind), so that the tests can show a wrong clock corrected or refused without touching the
    system clock. Every `time.time()` of the process reads it, as every reading of a wrong system clock would."""
    text = os.environ.get("SURGE_TEST_CLOCK_OFFSET_S")
    if not text:
        return
    offset = float(text)
    real = time.time
    time.time = lambda: real() + offset
    log.warning("surge: TEST ONLY: this worker's clock reads %+g s off the host's (SURGE_TEST_CLOCK_OFFSET_S)", offset)


def _read_ahead(options: Any) -> None:
    """A worker reads a replayed trace (and imports pandas) at start, not when the test starts: that would eat the
    seconds before t=0 and make the first arrivals late. The master has validated it; a failure shows there."""
    try:
        replay = scenario_of(options).replay()
    except UsageError:
        return
    if replay is not None:
        replay.counts_per_second()


def _serve_metrics(port: int) -> live_metrics.LiveMetrics:
    """Imported here: the endpoint's numpy and Prometheus client would otherwise add to every Locust boot (the
    arrivals' t=0 margin), wanted or not."""
    from loadtests.generator import live_metrics

    if not 0 < port < 65536:
        raise UsageError(f"--metrics-port must be 1..65535 (got {port})")
    try:
        metrics = live_metrics.serve(port)
    except OSError as exc:
        raise UsageError(f"--metrics-port {port}: {exc.strerror}") from None
    log.info("surge: Prometheus metrics on http://%s:%d/metrics", live_metrics.HOST, port)
    return metrics


class _PlainEnd:
    """A plain run's verdict (plain_run.py): after each web UI test, or at `quitting` for a headless run, once
    Locust's own statistics are final too."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.pending: Path | None = None
        self.writing: gevent.Greenlet[[Environment, Path], int] | None = None

    def on_finished(self, settings: RunSettings) -> None:
        options = self.environment.parsed_options
        if options is not None and options.headless:
            self.pending = Path(settings.out_dir)
        else:  # the web UI stays up for the next test: write this one's folder now, off the stop request
            self.writing = gevent.spawn(finish_plain_run, self.environment, Path(settings.out_dir))

    def on_quitting(self, **_: Any) -> None:
        if FestivalShape.recording is not None:
            FestivalShape.recording.end()  # Ctrl-C or SIGTERM mid-run: what was recorded still gets its verdict
        if self.writing is not None:
            self.writing.join()
        if self.pending is not None:
            run_dir, self.pending = self.pending, None
            finish_plain_run(self.environment, run_dir)


def _on_test_start(environment: Environment, **_: Any) -> None:
    runner, recording = environment.runner, FestivalShape.recording
    if recording is None or runner is None:
        return  # a worker: the master starts the run
    options = environment.parsed_options
    assert options is not None
    try:
        check_host(environment.host or "")
        scenario = scenario_of(options)
    except UsageError as exc:
        log.error("surge: %s", one_line(exc))
        gevent.spawn(runner.stop)  # the web UI stays up to take a loopback host or a scenario that exists
        return
    recording.begin(run_settings(options, scenario, environment.host or "", recording.worker_count()))


def _start_generator(settings: RunSettings, recorder: ProcessRecorder, index: int, count: int) -> Running:
    """This process's Generator (share `index` of `count`), handed to the user pool."""
    return start_generator(settings, recorder, index, count, publish=_publish)


def _publish(generator: Generator) -> None:
    RepayingUser.generator = generator


# Locust's EventHook.add_listener carries no type hints, hence no decorators above.
events.init_command_line_parser.add_listener(add_options)  # type: ignore[no-untyped-call]
events.init.add_listener(_on_init)  # type: ignore[no-untyped-call]
events.test_start.add_listener(_on_test_start)  # type: ignore[no-untyped-call]
