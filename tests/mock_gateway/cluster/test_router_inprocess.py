"""The router's retry rules against stand-in replicas served in this process (fast, deterministic)."""

from __future__ import annotations

import asyncio
import errno
import resource
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web

from mock_gateway.cluster.events import EventLog, RouterMetrics
from mock_gateway.cluster.forwarding import MAX_CONNECTIONS_PER_REPLICA, connection_cap
from mock_gateway.cluster.health import Mode
from mock_gateway.cluster.router import Router, RouterSettings, create_router_app
from mock_gateway.errors import ReplicaUnavailable

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PAYMENT = {"user_id": "u", "card_id": "c", "channel": "ICBC", "amount_fen": 100}


async def created(request: web.Request) -> web.StreamResponse:
    return web.json_response({"repayment_id": "rp_1", "key": request.headers["Idempotency-Key"]}, status=201)


async def unavailable(request: web.Request) -> web.StreamResponse:
    return ReplicaUnavailable("injected").to_response()


async def hang(request: web.Request) -> web.StreamResponse:
    """A replica that never answers (the runner's shutdown cancels it)."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


def replica(handler: Handler) -> web.Application:
    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"ready": True})

    app = web.Application()
    app.router.add_get("/readyz", ready)
    app.router.add_post("/v1/repayments", handler)
    return app


RouterFactory = Callable[..., Awaitable[tuple[Router, str]]]


@pytest.fixture
async def make_router(tmp_path: Path) -> AsyncIterator[RouterFactory]:
    runners: list[web.AppRunner] = []
    logs: list[EventLog] = []

    async def make(
        r1: Handler | None,
        r2: Handler,
        ratio: float = 0.0,
        min_per_s: float = 0.0,
        running: Callable[[], Collection[str]] | None = None,
    ) -> tuple[Router, str]:
        ports = {}
        for name, handler in (("r1", r1), ("r2", r2)):
            if handler is None:  # a replica whose process is gone: nothing listens on its port
                runner, port = await serve(web.Application())
                await runner.cleanup()
            else:
                runner, port = await serve(replica(handler))
                runners.append(runner)
            ports[name] = port
        settings = RouterSettings(
            mode=Mode.ACTIVE_STANDBY,
            check_interval_s=0.2,
            fall=2,
            rise=2,
            global_tps=10_000,
            user_tps=10_000,
            max_body_bytes=16_384,
            channels=("ICBC",),
            retry_ratio=ratio,
            retry_min_per_s=min_per_s,
        )
        log = EventLog(tmp_path / f"events{len(logs)}.jsonl", RouterMetrics())
        logs.append(log)
        router = Router(settings, ports, "127.0.0.1", log, running=running)
        runner, port = await serve(create_router_app(router, []))
        runners.append(runner)
        for _ in range(100):  # first checks decide; bounded wait
            if "r2" in router.pool.healthy() and (r1 is None or "r1" in router.pool.healthy()):
                break
            await asyncio.sleep(0.02)
        router.announce_failovers()
        return router, f"http://127.0.0.1:{port}"

    yield make
    for runner in reversed(runners):
        await runner.cleanup()
    for log in logs:
        log.close()


async def post(url: str) -> tuple[int, str, dict[str, str]]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.post(url + "/v1/repayments", json=PAYMENT, headers={"Idempotency-Key": "k1"}) as r,
    ):
        return r.status, r.headers["X-Replica"], dict(await r.json(content_type=None))


async def test_replica_unavailable_is_retried_on_the_next_replica(make_router: RouterFactory) -> None:
    _, url = await make_router(unavailable, created, ratio=0.2, min_per_s=5)
    status, replica, body = await post(url)
    assert (status, replica, body["key"]) == (201, "r2", "k1")


async def test_without_budget_the_replicas_own_503_is_passed_on(make_router: RouterFactory) -> None:
    router, url = await make_router(unavailable, created)
    status, replica, body = await post(url)
    assert (status, replica, body["code"]) == (503, "r1", "REPLICA_UNAVAILABLE")
    assert router.metrics.registry.get_sample_value("surge_router_retry_budget_exhausted_total") == 1


async def test_a_refused_connection_moves_to_the_next_replica_without_budget(make_router: RouterFactory) -> None:
    router, url = await make_router(None, created)
    router.pool.member("r1").health.record(True)  # pretend r1 was up a moment ago
    status, replica, _ = await post(url)
    assert (status, replica) == (201, "r2")


async def test_requests_waiting_on_a_replica_that_goes_down_are_cut_and_retried(make_router: RouterFactory) -> None:
    router, url = await make_router(hang, created)
    pending = asyncio.ensure_future(post(url))
    for _ in range(500):  # until the attempt waits on r1 (a fixed sleep was a guess on a loaded machine)
        if router.pool.member("r1").in_flight == 1:
            break
        await asyncio.sleep(0.01)
    assert router.pool.member("r1").in_flight == 1
    router.process_exited("r1")
    status, replica, _ = await pending
    # r1 never answers and there is no retry budget (ratio 0), so the router's 5 s request timeout would end in
    # an error, not in r2's 201: r2 answering proves the attempt was cut when r1 went down (no wall-clock bound).
    assert (status, replica) == (201, "r2")


@pytest.mark.parametrize(("running", "expected"), [(None, (503, "router")), (("r1", "r2"), (201, "r1"))])
async def test_panic_mode_routes_to_running_replicas_when_all_fail_their_checks(
    make_router: RouterFactory, running: tuple[str, ...] | None, expected: tuple[int, str]
) -> None:
    router, url = await make_router(created, created, running=(lambda: running) if running else None)
    for name in ("r1", "r2"):
        router.pool.member(name).health.force_down()  # both "down" although both answer
    status, replica, body = await post(url)
    assert (status, replica) == expected
    if status == 503:
        assert body["code"] == "NO_HEALTHY_REPLICA"
    else:
        assert router.metrics.registry.get_sample_value("surge_router_panic_routed_total") == 1


async def test_a_replicas_own_503_counts_as_a_failed_check(make_router: RouterFactory) -> None:
    """A replica answering 503 REPLICA_UNAVAILABLE (it cannot commit) may still pass /readyz: each such answer is
    a passive failed check, and `fall` of them take it out."""
    router, url = await make_router(unavailable, created, ratio=1.0, min_per_s=100)
    for _ in range(router.settings.fall):
        status, replica, _ = await post(url)
        assert (status, replica) == (201, "r2")
    assert not router.pool.member("r1").up


async def test_the_routers_own_descriptor_shortage_is_not_the_replicas_failure(
    make_router: RouterFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EMFILE while connecting (the router out of descriptors) is the router's shortage: the replica stays up."""
    router, url = await make_router(created, created, ratio=1.0, min_per_s=100)
    backend = router._backends["r1"]

    def out_of_descriptors(*args: object, **kwargs: object) -> object:
        key = SimpleNamespace(host="127.0.0.1", port=1, ssl=True)
        raise aiohttp.ClientConnectorError(key, OSError(errno.EMFILE, "Too many open files"))  # type: ignore[arg-type]

    monkeypatch.setattr(backend.session, "request", out_of_descriptors)
    for _ in range(router.settings.fall + 1):
        status, replica, _ = await post(url)
        assert (status, replica) == (201, "r2")
    assert router.pool.member("r1").up, "the replica did nothing wrong"
    failures = router.metrics.registry.get_sample_value(
        "surge_router_attempt_failures_total", {"replica": "r1", "reason": "router_resources"}
    )
    assert failures == router.settings.fall + 1


def test_the_connection_pool_per_replica_is_capped_below_the_descriptor_limit() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = connection_cap(3)
    soft_after, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert 16 <= cap <= MAX_CONNECTIONS_PER_REPLICA
    assert soft_after >= soft
    assert soft_after == resource.RLIM_INFINITY or 3 * cap * 2 < soft_after
