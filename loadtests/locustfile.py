"""What `locust -f loadtests/locustfile.py` loads: options, the user class, the shape, the event hooks. Thin.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8080 --scenario double11            (web UI)
    locust -f loadtests/locustfile.py --host http://127.0.0.1:8080 --scenario double11 --headless --processes 2
    locust -f loadtests/locustfile.py --target examples/acme/target.toml --scenario double11 --headless  (§7)

The shape spawns the scenario's user pool at once and ends the test by itself once every process has sent its
last windows; arrivals come from driver.Generator, not from Locust's user count (open model). Without
`--surge-out` the run folder is ./runs/locust-<UTC time>/. A non-loopback --host is refused unless
SURGE_ALLOW_REMOTE=1 (what `surge run --allow-remote` sets).

A plain run ends with surge's verdict (plain_run.py): the master writes the whole run folder and Locust exits
with surge's code. `surge run` passes `--surge-managed` because it analyses the folder itself, after collecting
the ledger and the events. `locust --help` cannot list the options below (Locust prints its help before it
loads a locustfile); README "Plain Locust" lists them, and `surge run --help` shows the same run's options.

    --scenario NAME|FILE   --scale X   --surge-duration S   --surge-out DIR   --metrics-port PORT
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import gevent
import gevent.ssl
from locust import LoadTestShape, User, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from loadtests.channels import ChannelsUnavailable, default_channels, served_channels
from loadtests.errors import UsageError
from loadtests.generator.arrivals import RateCurve, arrival_times
from loadtests.generator.auth import Tokens
from loadtests.generator.driver import Generator, Ticket, drain_s
from loadtests.generator.payer import Payer
from loadtests.generator.plain_run import finish_plain_run
from loadtests.generator.population import Population
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
from loadtests.generator.settlement import CallbackFormat, Settler, builtin_callbacks, target_callbacks
from loadtests.generator.target import TargetApi
from loadtests.generator.transport import Transport
from loadtests.meta import run_meta
from loadtests.scenario.cluster_only import ignored_warnings
from loadtests.scenario.credentials import certificate_expiry
from loadtests.scenario.files import load_scenario
from loadtests.scenario.model import Scenario
from loadtests.scenario.profile import (
    TargetProfile,
    load_profile,
    signer,
    target_meta,
    tls_context,
    uses_tls,
)
from loadtests.scenario.profile_answers import MAX_BODY_BYTES
from mock_gateway.lifeline import die_with_parent
from mock_gateway.net import is_loopback_host
from reports.console_text import one_line
from runfolder.claim import claim_new
from runfolder.clock import ClusterClock, read_cluster_clock
from runfolder.layout import RunFolderError, write_json
from runfolder.models import read_meta

if TYPE_CHECKING:
    from loadtests.generator import live_metrics

START_LEAD_S = 0.5  # t=0 this long after the test starts when surge run did not fix it, per worker process too
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
                pool = self._pools[key] = _scenario(options).arrivals.pool
            except UsageError as exc:  # typed into the web UI's form: one line in its Logs tab, the test stops
                log.error("surge: %s", one_line(exc))
                return None
        return pool, float(pool)


def _add_options(parser: Any) -> None:
    # Locust's web UI listens on every interface by default, unauthenticated, and a test started from it carries
    # the target profile's ${NAME} secrets: loopback unless asked otherwise (--web-host, LOCUST_WEB_HOST or a
    # config file's web-host all still win over this default).
    parser.set_defaults(web_host="127.0.0.1")
    # --scale and --surge-duration stay text until _scenario reads them: the web UI's form converts a field to
    # its option's type itself, and a typo in a float field would be an HTTP 500 instead of one logged line.
    parser.add_argument("--scenario", default="double11", help="surge: a built-in scenario name or a TOML file")
    parser.add_argument("--scale", default="1", help="surge: multiply every rate and the user pool")
    parser.add_argument("--surge-duration", default="0", help="surge: stretch the scenario to S seconds (0: its own)")
    parser.add_argument(
        "--surge-out", default="", include_in_web_ui=False, help="surge: the run folder (default runs/locust-<time>)"
    )
    parser.add_argument(
        "--surge-start-unix", type=float, default=0.0, include_in_web_ui=False, help="surge: the shared t=0"
    )
    parser.add_argument(
        "--target", default="", include_in_web_ui=False, help="surge: a target profile TOML for another API (§7)"
    )
    parser.add_argument(
        "--surge-no-abort", action="store_true", default=False, help="surge: ignore the scenario's [[abort]] rules"
    )
    parser.add_argument(
        "--surge-max-clock-offset",
        type=float,
        default=5.0,
        include_in_web_ui=False,
        help="surge: refuse a worker whose clock is further off the master's, in seconds (default 5)",
    )
    parser.add_argument(
        "--surge-managed",
        action="store_true",
        include_in_web_ui=False,
        help="surge: set by `surge run`, which analyses the run folder itself (no verdict at the end here)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        include_in_web_ui=False,
        help="surge: serve Prometheus metrics on 127.0.0.1:PORT from the master (default 0: off)",
    )


def _on_init(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    assert options is not None
    master = not isinstance(environment.runner, WorkerRunner)
    if not master and getattr(options, "processes", None):
        die_with_parent(os.getppid())  # forked by a --processes master: no worker outlives it, even on SIGKILL
    metrics: live_metrics.LiveMetrics | None = None
    if master:
        try:
            if getattr(options, "ips", None):  # locust-plugins' constant-rate option, when it is loaded
                raise UsageError(
                    "--ips (locust-plugins) replaces surge's arrival schedule and would send nothing; "
                    "set the rate in the scenario's [[rate]] or with --scale"
                )
            scenario = _scenario(options)
            if not options.surge_managed:  # `surge run` applies them, or warns as plain Locust does here
                for warning in ignored_warnings(scenario, "by plain Locust (`surge run` starts that cluster)"):
                    log.warning("surge: warning: %s", one_line(warning))
            if options.target:  # its base_url is the host unless --host overrides it
                environment.host = options.host = _profile(options.target, environment.host or None).base_url
            if environment.host:
                _check_host(environment.host)
            if options.metrics_port:
                metrics = _serve_metrics(options.metrics_port)
        except UsageError as exc:
            print(f"surge: {one_line(exc)}", file=sys.stderr)
            sys.exit(2)
    else:
        _skew_clock_for_tests()
        _read_ahead(options)
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        WorkerRecording(environment, runner, _start_generator)  # kept by the message handlers it registers
        return
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
        replay = _scenario(options).replay()
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
        _check_host(environment.host or "")
        scenario = _scenario(options)
    except UsageError as exc:
        log.error("surge: %s", one_line(exc))
        gevent.spawn(runner.stop)  # the web UI stays up to take a loopback host or a scenario that exists
        return
    workers = recording.worker_count()
    t0 = options.surge_start_unix or time.time() + START_LEAD_S * (1 + workers)
    if t0 < time.time():
        log.warning("surge: --surge-start-unix is %.1f s in the past; early arrivals will count late", time.time() - t0)
    # each test started from the web UI gets its own folder, even two in the same second (runfolder.claim)
    out = options.surge_out or str(claim_new(Path("runs"), f"locust-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"))
    _ensure_meta(Path(out), scenario, options, environment.host or "", t0, workers)
    scale, duration_s = _numbers(options)
    settings = RunSettings(
        scenario_ref=options.scenario,
        scale=scale,
        duration_s=duration_s,
        out_dir=out,
        t0=t0,
        hard_stop=t0 + scenario.duration_s + drain_s(scenario),
        late_ms=scenario.arrivals.late_ms,
        expected_offered=RateCurve(scenario.breakpoints()).total,
        channels=_channels(scenario, Path(out), environment.host or "", targeted=bool(options.target)),
        target=options.target,
        abort=not options.surge_no_abort,
        trace_salt=secrets.token_hex(16),
        key_prefix=_key_prefix(Path(out)),
        clock=_clock(scenario, Path(out)).model_dump(mode="json"),
        host=environment.host or "",
        max_clock_offset_s=options.surge_max_clock_offset,
    )
    recording.begin(settings)


def _start_generator(settings: RunSettings, recorder: ProcessRecorder, index: int, count: int) -> Running:
    """Build this process's Generator (share `index` of `count`) and hand it to the user pool."""
    scenario = load_scenario(settings.scenario_ref).scaled(settings.scale, settings.duration_s)
    out = Path(settings.out_dir)
    if settings.host and os.environ.get("SURGE_ALLOW_REMOTE") != "1" and not _loopback(settings.host):
        log.error(
            "surge: this worker refuses to load %s: not a loopback address (set SURGE_ALLOW_REMOTE=1 on the worker, "
            "`surge worker --allow-remote`); it generates nothing",
            one_line(settings.host),
        )
        return Running(stop=lambda: None, reshare=lambda *_: None)
    population = Population(scenario.population, settings.channels or default_channels(scenario), scenario.seed)
    replay = scenario.replay()
    specs = None
    if replay is not None:  # a trace: its rows are the schedule, and say who pays what
        schedule = replay.schedule(index, count)
        times: Iterator[float] = iter(schedule.t_s.tolist())
        specs = replay.arrivals(schedule, settings.trace_salt or secrets.token_hex(16))
    else:
        process = scenario.arrivals.process
        assert process != "trace"
        times = arrival_times(
            RateCurve(scenario.breakpoints()),
            process,
            seed=scenario.seed,
            worker_index=index,
            worker_count=count,
        )
        if settings.from_s:  # a worker that joined late: its share of what is still to come
            times = itertools.dropwhile(lambda t: t < settings.from_s, times)
    target, tokens, tls, expired = None, None, None, False
    if settings.target:  # checked by the master; the base URL is Locust's host
        target, tokens, tls, expired = _target_api(settings.target, scenario)
    generator = Generator(
        scenario,
        population,
        ClusterClock.model_validate(settings.clock) if settings.clock is not None else _clock(scenario, out),
        recorder,
        times,
        seed=f"{scenario.seed}/payer/{index}",
        trace_arrivals=specs,
        target=target,
        tokens=tokens,
        key_prefix=settings.key_prefix,
        users=max(1, scenario.arrivals.pool // count),  # Locust spreads the pool over the processes
    )
    generator.tls_context = tls
    generator.certificate_expired = expired
    RepayingUser.generator = generator
    client = scenario.client
    settler = None
    if client.settlement != "none":
        settler = Settler(
            mode=client.settlement,
            deadline=generator.run_end + scenario.settle_tail_s(),
            pending_max=client.settle_pending_max,
            fail_ratio=client.callback_fail_ratio,
            callbacks=callback_format(scenario, target),
            write_row=recorder.write_row,
            counters_path=out / "settlement" / f"worker-{index}.json",
            seed=f"{scenario.seed}/settle/{index}",
        )
        settler.status_poll = None if target is None else target.poll
    generator.start(settler)

    def reshare(from_s: float, share: int, shares: int) -> None:
        if replay is not None:
            log.warning("surge: a replayed trace keeps its split between the workers it started with")
            return
        process = scenario.arrivals.process
        assert process != "trace"
        curve = RateCurve(scenario.breakpoints())
        again = arrival_times(curve, process, seed=scenario.seed, worker_index=share, worker_count=shares)
        generator.reshare(generator.t0 + from_s, again)

    return Running(stop=generator.stop, reshare=reshare)


def _target_api(path: str, scenario: Scenario) -> tuple[TargetApi, Tokens | None, gevent.ssl.SSLContext | None, bool]:
    """The profile compiled for this process: its request builder with the signer, its token source, its TLS
    context, and whether its client certificate has expired (the master validated them all before the test)."""
    profile = load_profile(path, allow_remote=True, host=None)
    tls = tls_context(profile, gevent.ssl.SSLContext) if uses_tls(profile) else None
    expired = profile.tls.cert_file is not None and certificate_expiry(profile.tls.cert_file) is not None
    target = TargetApi(profile, signer=signer(profile, os.environ, Path(path).resolve().parent))
    tokens = None
    if profile.auth.oauth2 is not None:
        timeout_s = scenario.client.timeout_s
        tokens = Tokens(
            profile.auth.oauth2, os.environ, timeout_s=timeout_s, tls_context=tls, certificate_expired=expired
        )
    return target, tokens, tls, expired


def callback_format(scenario: Scenario, target: TargetApi | None) -> CallbackFormat:
    """The deliveries the receiver takes: the built-in gateway's, or the target profile's `[settle.callback]`."""
    settle = None if target is None else target.profile.settle
    if settle is not None and settle.callback is not None:
        return target_callbacks(settle.callback, os.environ)
    return builtin_callbacks(scenario.notify_secret())


def _ensure_meta(out: Path, scenario: Scenario, options: Any, host: str, t0: float, workers: int) -> None:
    """`surge run` writes meta.json itself; a plain `locust -f` run (a distributed master, the web UI) gets one
    here, so that `surge report` can analyse its folder too. No gateway config: the gateway is not ours."""
    path = out / "meta.json"
    if path.exists():
        return
    out.mkdir(parents=True, exist_ok=True)
    meta = run_meta(
        scenario,
        scenario_ref=options.scenario,
        scale=_numbers(options)[0],
        started_unix=t0,
        host=host,
        workers=max(1, workers),
        gateway_config=None,
        replicas=None,
    )
    if options.target:
        profile = _profile(options.target, host or None)
        meta = meta.model_copy(update={"target": target_meta(profile, options.target, default_channels(scenario))})
    write_json(path, meta)


def _scenario(options: Any) -> Scenario:
    scale, duration_s = _numbers(options)
    return load_scenario(options.scenario).scaled(scale, duration_s)


def _numbers(options: Any) -> tuple[float, float | None]:
    """--scale and --surge-duration (None: the scenario's own) from their text; UsageError names a bad one."""
    values: list[float] = []
    for flag, text in (("--scale", options.scale), ("--surge-duration", options.surge_duration)):
        try:
            values.append(float(text))
        except (TypeError, ValueError):
            raise UsageError(f"{flag} must be a number (got {text!r})") from None
    return values[0], values[1] or None


def _check_host(host: str) -> None:
    parts = urlsplit(host)
    if not parts.hostname:
        raise UsageError(f"--host must be an http URL such as http://127.0.0.1:8080 (got {host!r})")
    if os.environ.get("SURGE_ALLOW_REMOTE") != "1" and not is_loopback_host(parts.hostname):
        raise UsageError(
            f"--host {parts.hostname} is not a loopback address; set SURGE_ALLOW_REMOTE=1 to load a remote gateway"
        )


def _loopback(url: str) -> bool:
    hostname = urlsplit(url).hostname
    return bool(hostname) and is_loopback_host(hostname or "")


def _profile(path: str, host: str | None) -> TargetProfile:
    """The --target profile, checked as `surge run` checks it (exit 2 from _on_init when it is wrong)."""
    return load_profile(path, allow_remote=os.environ.get("SURGE_ALLOW_REMOTE") == "1", host=host, env=os.environ)


def _channels(scenario: Scenario, out: Path, host: str, *, targeted: bool) -> list[str]:
    """The bank codes cards are drawn on, read once at test start: the embedded cluster's effective config
    (meta.json); else what a §3 gateway serves at GET /v1/channels; else, with a warning, the defaults."""
    try:
        config = read_meta(out).gateway_config or {}
    except RunFolderError:
        config = {}
    codes = [str(channel["code"]) for channel in config.get("channels", [])]
    if codes:
        return codes
    if not targeted and host:
        try:
            return served_channels(host)
        except ChannelsUnavailable as exc:
            defaults = default_channels(scenario)
            shown = ", ".join(defaults)
            log.warning("surge: warning: %s; drawing cards on the default channels %s", one_line(exc), shown)
            return defaults
    return default_channels(scenario)


def _key_prefix(out: Path) -> str:
    """The run's idempotency-key prefix from meta.json (every writer of meta.json sets one), else none."""
    try:
        return read_meta(out).key_prefix or ""
    except RunFolderError:
        return ""


def _clock(scenario: Scenario, out: Path) -> ClusterClock:
    """The cluster's anchored clock from cluster.json (surge run puts it in the run folder), else real time."""
    clock = read_cluster_clock(out)
    if clock is not None:
        return clock
    if scenario.gateway.get("clock", {}).get("speed", 1.0) != 1.0:
        log.warning("surge: no cluster.json under %s; plan parts are timed as if the gateway ran on real time", out)
    return ClusterClock.wall()


# Locust's EventHook.add_listener carries no type hints, hence no decorators above.
events.init_command_line_parser.add_listener(_add_options)  # type: ignore[no-untyped-call]
events.init.add_listener(_on_init)  # type: ignore[no-untyped-call]
events.test_start.add_listener(_on_test_start)  # type: ignore[no-untyped-call]
