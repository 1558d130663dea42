"""The one problem middleware of both front ends, with handlers defined inline (aiohttp's own test style)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from mock_gateway.errors import RateLimited
from mock_gateway.problems import problem_middleware

Client = Callable[[Callable[[web.Request], Awaitable[web.StreamResponse]]], Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def client_for() -> AsyncIterator[Client]:
    clients: list[TestClient[Any, Any]] = []

    async def build(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> TestClient[Any, Any]:
        app = web.Application(middlewares=[problem_middleware("here", max_body_bytes=10)], client_max_size=10)
        app.router.add_post("/x", handler)
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.close()


async def test_a_server_fault_is_one_log_record_and_a_500_problem(
    client_for: Client, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: web.Request) -> web.StreamResponse:
        raise RuntimeError("a bug")

    client = await client_for(broken)
    with caplog.at_level(logging.ERROR):
        response = await client.post("/x")
    assert response.status == 500
    assert response.content_type == "application/problem+json"
    body = await response.json(content_type=None)
    assert (body["code"], body["retryable"]) == ("INTERNAL_ERROR", False)
    assert response.headers["X-Replica"] == "here"
    faults = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(faults) == 1 and faults[0].exc_info is not None


async def test_gateway_errors_and_aiohttps_own_refusals_are_problems(client_for: Client) -> None:
    async def limited(request: web.Request) -> web.StreamResponse:
        await request.read()
        raise RateLimited("user", 0.2, 5)

    client = await client_for(limited)
    answers = [
        (await client.post("/x"), 429, "RATE_LIMITED"),
        (await client.get("/x"), 405, "METHOD_NOT_ALLOWED"),
        (await client.post("/nowhere"), 404, "NOT_FOUND"),
        (await client.post("/x", data=b"x" * 100), 413, "PAYLOAD_TOO_LARGE"),
    ]
    for response, status, code in answers:
        assert response.status == status
        assert response.content_type == "application/problem+json"
        assert (await response.json(content_type=None))["code"] == code
