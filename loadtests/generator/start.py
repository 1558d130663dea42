"""This process's generator, built from the run's settings: the one thing a worker and the lone process do alike.

The settings say everything (the master read the run folder and the profile once); this module draws the
process's share of the arrivals (or of a replayed trace), compiles a target profile with its signer, tokens and
TLS, starts the settlement watcher, and hands the Generator to the user pool before it starts. A worker whose
host is not loopback refuses here, on its own, whatever the master allowed.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import gevent.ssl

from errortext.console_text import one_line
from loadtests.channels import default_channels
from loadtests.generator.arrivals import RateCurve, arrival_times
from loadtests.generator.auth import Tokens
from loadtests.generator.driver import Generator
from loadtests.generator.options import loopback
from loadtests.generator.population import Population
from loadtests.generator.recording.protocol import Running, RunSettings
from loadtests.generator.recording.recorder import ProcessRecorder
from loadtests.generator.settings import cluster_clock
from loadtests.generator.settlement import CallbackFormat, Settler, builtin_callbacks, target_callbacks
from loadtests.generator.target import TargetApi
from loadtests.scenario.credentials import certificate_expiry
from loadtests.scenario.files import load_scenario
from loadtests.scenario.model import Scenario
from loadtests.scenario.profile import load_profile, signer, tls_context, uses_tls
from runfolder.clock import ClusterClock
from runfolder.layout import RunFolder

log = logging.getLogger("surge")


def start_generator(
    settings: RunSettings,
    recorder: ProcessRecorder,
    index: int,
    count: int,
    *,
    publish: Callable[[Generator], None],
) -> Running:
    """Build this process's Generator (share `index` of `count`), `publish` it to the user pool, start it."""
    scenario = load_scenario(settings.scenario_ref).scaled(settings.scale, settings.duration_s)
    out = Path(settings.out_dir)
    if settings.host and os.environ.get("SURGE_ALLOW_REMOTE") != "1" and not loopback(settings.host):
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
        ClusterClock.model_validate(settings.clock) if settings.clock is not None else cluster_clock(scenario, out),
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
    publish(generator)
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
            counters_path=RunFolder(out).receiver_counters_of(index),
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
