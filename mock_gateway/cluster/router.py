"""The failover router: one address in front of the replicas, which hides a dead one from the clients.

For each `/v1/` request, in order: a `POST /v1/repayments` is validated exactly as a replica would (a request a
replica would refuse is refused here, before it spends a token), then the global and per-user caps (they live
here because only the router sees the whole gateway's traffic), then the replica chosen by `health.ReplicaPool`,
then the attempt (`forwarding`). An attempt that fails *before any answer* is retried on the next healthy
replica with the same body and `Idempotency-Key`, within the retry budget: safe even when the first replica
committed before dying, because the ledger's commit step re-checks the key and replays the stored answer.

When every replica fails its checks at once, the router routes anyway to the replicas whose process runs
(Envoy's panic mode): on a starved host, probes time out before replicas die; `503 NO_HEALTHY_REPLICA` is left
for when no replica process runs. Health comes from three sources, fastest first: the supervisor's news that
the process exited, a forwarded request refused at connect, and the probe of `/readyz` every
`check_interval_ms` (the only one that sees a paused process). When a replica goes down, the requests still
waiting on it are cut at once and retried elsewhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mock_gateway.clock import SimClock
from mock_gateway.cluster.events import EventKind, EventLog, RouterMetrics
from mock_gateway.cluster.forwarding import AttemptFailed, Backend, connection_cap
from mock_gateway.cluster.health import Mode, ReplicaPool, Transition
from mock_gateway.cluster.retry_budget import RetryBudget
from mock_gateway.config import GatewayConfig, Rates
from mock_gateway.errors import (
    GatewayError,
    NoHealthyReplica,
    OutcomeUnknown,
    RateLimited,
    ReplicaUnavailable,
)
from mock_gateway.limits import DEFAULT_BURST_MS, admission_for
from mock_gateway.problems import problem_middleware
from mock_gateway.validation import peek_code, read_body, read_charge

ROUTER_NAME = "router"  # X-Replica of the answers the router gives itself
NO_REPLICA_RETRY_AFTER_S = 1.0
MOVES_LOAD = frozenset({"connect", "replica_down"})
"""Failures whose retry moves load instead of adding it: the attempt never reached a replica (refused), or
its replica was taken out of rotation while the attempt waited. These do not spend the retry budget; timeouts,
resets and 503s from a replica that is still in rotation do, because retrying those is what multiplies load
on a cluster that is merely slow."""
NOT_EXECUTED = frozenset({"connect", "replica_unavailable", "router_resources"})
"""Failures after which the replica certainly recorded nothing: the connection was refused, or the replica
answered its own 503 (docs/gateway.md: nothing stored). After any other failure the outcome is unknown."""


@dataclass(frozen=True, slots=True)
class RouterSettings:
    """The router's knobs: health and caps from the config; timeouts and budget fixed (no config keys yet)."""

    mode: Mode
    check_interval_s: float
    fall: int
    rise: int
    global_tps: float
    user_tps: float
    max_body_bytes: int
    channels: tuple[str, ...]
    async_channels: frozenset[str] = frozenset()  # the channels whose requests may carry a notify_url
    burst_ms: float = DEFAULT_BURST_MS
    rates_now: Callable[[], Rates] | None = None  # the dynamic limits' rates on the gateway clock, when scheduled
    connect_timeout_s: float = 0.25
    request_timeout_s: float = 5.0
    retry_ratio: float = 0.2
    retry_min_per_s: float = 5.0

    @property
    def check_timeout_s(self) -> float:
        """A probe may take at most one interval and never more than 250 ms: a paused replica is slow."""
        return min(self.check_interval_s, 0.25)

    @classmethod
    def from_config(cls, config: GatewayConfig, clock: SimClock | None = None) -> RouterSettings:
        """`clock`: the replicas' anchored clock, so that dynamic limits switch here at the same instant."""
        sim = clock or SimClock.from_config(config.clock)
        return cls(
            mode=Mode(config.router.mode),
            check_interval_s=config.router.check_interval_ms / 1000,
            fall=config.router.fall,
            rise=config.router.rise,
            global_tps=config.limits.global_tps,
            user_tps=config.limits.user_tps,
            max_body_bytes=config.server.max_body_bytes,
            channels=tuple(channel.code for channel in config.channels),
            async_channels=config.async_channels(),
            burst_ms=config.limits.burst_ms,
            rates_now=(lambda: config.rates_at(sim.now())) if config.schedules_rates() else None,
        )


class Router:
    """Health, selection, caps and forwarding; the admin API (in `mock_gateway.cluster.serve`) sits on top."""

    def __init__(
        self,
        settings: RouterSettings,
        ports: dict[str, int],
        host: str,
        events: EventLog,
        running: Callable[[], Collection[str]] | None = None,
    ) -> None:
        """`running` names the replicas whose process runs and is not paused (the supervisor knows): the
        candidates of panic routing when no replica passes its checks. Without it there is no panic mode."""
        self.settings = settings
        self._running = running
        self.events = events
        self.metrics: RouterMetrics = events.metrics
        self.pool = ReplicaPool.of(list(ports), settings.mode, settings.fall, settings.rise)
        self.ports = dict(ports)
        self.host = host
        self.budget = RetryBudget(settings.retry_ratio, 10, settings.retry_min_per_s)
        fixed = Rates(settings.global_tps, 0.0, settings.user_tps, settings.burst_ms)
        self.admission = admission_for(
            settings.rates_now or (lambda: fixed),
            scheduled=settings.rates_now is not None,
            scopes=("global", "user"),
            monotonic=time.monotonic,
        )
        self._backends: dict[str, Backend] = {}
        self._probe_session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._announced_target: str | None = None  # failovers are reported once the cluster has started

    # ---- life cycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the connection pools and start probing; call from the event loop that will serve."""
        per_replica = connection_cap(len(self.ports))
        for name, port in self.ports.items():
            self._backends[name] = Backend.open(
                name,
                f"http://{self.host}:{port}",
                connections=per_replica,
                connect_timeout_s=self.settings.connect_timeout_s,
            )
            self.metrics.watch_in_flight(name, self._in_flight_reader(name))
        self._probe_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None)
        )
        for name in self.ports:
            self._spawn(self._probe_loop(name))

    def move(self, name: str, port: int) -> None:
        """The replica now listens on `port` (restarted while its old port was taken)."""
        self.ports[name] = port
        backend = self._backends.get(name)
        if backend is not None:
            backend.base_url = f"http://{self.host}:{port}"

    def _in_flight_reader(self, name: str) -> Callable[[], float]:
        member = self.pool.member(name)
        return lambda: float(member.in_flight)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for backend in self._backends.values():
            await backend.session.close()
        if self._probe_session is not None:
            await self._probe_session.close()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def announce_failovers(self) -> None:
        """From now on a change of the replica taking traffic is a `failover` event (not during start-up)."""
        self._announced_target = self.pool.traffic_target()

    # ---- health -----------------------------------------------------------------------------------------

    async def _probe_loop(self, name: str) -> None:
        """Probe on a fixed cadence; a slow probe does not delay the next one, so a hang is seen in time.

        After a stall of the router's own loop the cadence restarts from now instead of firing the missed
        probes back to back.
        """
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            self._spawn(self._probe(name))
            next_at = max(next_at + self.settings.check_interval_s, loop.time())
            await asyncio.sleep(next_at - loop.time())

    async def _probe(self, name: str) -> None:
        assert self._probe_session is not None
        url = f"{self._backends[name].base_url}/readyz"
        try:
            async with asyncio.timeout(self.settings.check_timeout_s):
                async with self._probe_session.get(url) as response:
                    await response.read()
                    ok, detail = response.status == 200, f"readyz {response.status}"
        except TimeoutError:
            ok, detail = False, f"readyz timeout after {self.settings.check_timeout_s * 1000:.0f} ms"
        except aiohttp.ClientError as exc:
            ok, detail = False, f"readyz {type(exc).__name__}"
        self.record_check(name, ok, detail)

    def record_check(self, name: str, ok: bool, detail: str) -> None:
        """Feed one check result (active or passive) to the replica's fall/rise state."""
        health = self.pool.member(name).health
        if not ok and health.up:  # only failures that count toward `fall`: a down replica stays quiet
            self.events.emit(EventKind.CHECK_FAILED, name, detail)
        self._apply(name, health.record(ok), detail)

    def process_exited(self, name: str) -> None:
        """The supervisor saw the process die: no need to wait for `fall` failed checks."""
        self._apply(name, self.pool.member(name).health.force_down(), "process exited")

    def _apply(self, name: str, transition: Transition | None, detail: str) -> None:
        if transition is None:
            return
        up = transition is Transition.UP
        self.events.emit(EventKind.REPLICA_UP if up else EventKind.REPLICA_DOWN, name, detail)
        self.metrics.replica_up.labels(replica=name).set(1 if up else 0)
        if not up:
            self._backends[name].cut_waiting()  # to be retried elsewhere at once
        target = self.pool.traffic_target()
        if self._announced_target is not None and target != self._announced_target:
            self.events.emit(EventKind.FAILOVER, None, f"{self._announced_target}->{target}")
            self._announced_target = target

    # ---- forwarding -------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Every `/v1/` request: caps, then attempts on healthy replicas until one answers."""
        try:
            return await self._route(request)
        except GatewayError as exc:
            self.metrics.rejected.labels(code=exc.code).inc()
            raise

    async def _route(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        if request.method == "POST" and request.path == "/v1/repayments":
            charge, body = await read_charge(
                request, self.settings.channels, self.settings.max_body_bytes, self.settings.async_channels
            )
            refusal = self.admission.admit(charge.user_id)
            if refusal is not None:
                raise RateLimited(refusal.scope, refusal.retry_after_s, refusal.rate_per_s)
        else:
            body = await read_body(request, self.settings.max_body_bytes)
        loop = asyncio.get_running_loop()
        self.budget.record_request(loop.time())
        tried: set[str] = set()
        failure: AttemptFailed | None = None
        uncertain = False  # an attempt reached a replica that may have committed before it failed
        while (name := self._next(tried)) is not None:
            tried.add(name)
            if failure is not None:
                if failure.reason not in MOVES_LOAD and not self.budget.try_acquire(loop.time()):
                    self.metrics.retry_budget_exhausted.inc()
                    break
                self.metrics.retries.labels(reason=failure.reason).inc()
            try:
                response = await self._attempt(self._backends[name], request, body)
            except AttemptFailed as exc:
                failure = exc
                uncertain = uncertain or exc.reason not in NOT_EXECUTED
                self.metrics.attempt_failures.labels(replica=name, reason=exc.reason).inc()
                continue
            self.metrics.count_answer(name, response.status)
            self.metrics.latency.observe(time.perf_counter() - started)
            return response
        self.metrics.latency.observe(time.perf_counter() - started)
        if failure is None:
            raise NoHealthyReplica("no replica is healthy", retry_after_s=NO_REPLICA_RETRY_AFTER_S)
        if uncertain:
            raise OutcomeUnknown(
                f"a replica failed after receiving the request ({failure.reason}) and no retry was possible; "
                "it may have been recorded: retry with the same Idempotency-Key to learn the outcome",
                retry_after_s=NO_REPLICA_RETRY_AFTER_S,
            )
        if failure.answer is not None:
            return failure.answer
        raise ReplicaUnavailable(
            f"the replica failed before answering ({failure.reason}) and no retry was possible; "
            "retrying with the same Idempotency-Key is safe",
            retry_after_s=NO_REPLICA_RETRY_AFTER_S,
        )

    def _next(self, tried: set[str]) -> str | None:
        name = self.pool.select(tried)
        if name is None and self._running is not None and not self.pool.healthy():
            name = self.pool.select_in_panic(self._running(), tried)
            if name is not None:
                self.metrics.panic_routed.inc()
        return name

    async def _attempt(self, backend: Backend, request: web.Request, body: bytes) -> web.Response:
        member = self.pool.member(backend.name)
        member.in_flight += 1
        try:
            response, payload = await backend.forward(request, body, self.settings.request_timeout_s)
        except AttemptFailed as exc:
            if exc.reason == "timeout" and not member.up:
                raise AttemptFailed("replica_down") from None  # cut by `cut_waiting`: the retry moves load
            if exc.reason == "connect":
                self.record_check(backend.name, False, "passive: connect failed")
            raise
        finally:
            member.in_flight -= 1
        if response.status == 503 and peek_code(payload) == ReplicaUnavailable.code:
            self.record_check(backend.name, False, "passive: 503 REPLICA_UNAVAILABLE")
            raise AttemptFailed("replica_unavailable", response)
        return response


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"}, headers={"X-Replica": ROUTER_NAME})


def create_router_app(router: Router, admin_routes: list[web.RouteDef]) -> web.Application:
    """The router's aiohttp app; `admin_routes` come from the cluster, which owns the processes."""

    async def readyz(request: web.Request) -> web.Response:
        if not router.pool.healthy():
            raise NoHealthyReplica("no replica is healthy", retry_after_s=NO_REPLICA_RETRY_AFTER_S)
        return web.json_response({"status": "ready", "healthy": router.pool.healthy()})

    async def metrics(request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(router.metrics.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await router.start()
        yield
        await router.close()

    middleware = problem_middleware(ROUTER_NAME, max_body_bytes=router.settings.max_body_bytes)
    app = web.Application(middlewares=[middleware], client_max_size=router.settings.max_body_bytes + 1)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_routes(admin_routes)
    app.router.add_route("*", "/v1/{tail:.*}", router.handle)
    app.cleanup_ctx.append(lifecycle)
    return app
