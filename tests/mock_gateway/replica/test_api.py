"""The read endpoints, problem+json for unknown routes, health, metrics and admin auth, in-process."""

from __future__ import annotations

from typing import Any

from tests.mock_gateway.conftest import ADMIN, body


async def test_get_repayment_returns_what_was_acknowledged(make_config: Any, make_client: Any) -> None:
    client = await make_client(make_config())
    created = await (await client.post("/v1/repayments", json=body(), headers={"Idempotency-Key": "g1"})).json()

    response = await client.get(f"/v1/repayments/{created['repayment_id']}")

    assert response.status == 200
    stored = await response.json()
    for field in ("repayment_id", "user_id", "card_id", "channel", "amount_fen", "business_date", "replica"):
        assert stored[field] == created[field]
    assert stored["idempotency_key"] == "g1"


async def test_unknown_repayment_and_unknown_path_and_method_are_problems(make_config: Any, make_client: Any) -> None:
    client = await make_client(make_config())
    for method, path, status in [
        ("GET", "/v1/repayments/rp_nope", 404),
        ("GET", "/v1/repayments/" + "x" * 500, 404),
        ("GET", "/nowhere", 404),
        ("DELETE", "/v1/repayments", 405),
        ("PUT", "/healthz", 405),
    ]:
        response = await client.request(method, path)
        assert response.status == status, (method, path)
        assert response.content_type == "application/problem+json"
        problem = await response.json()
        assert problem["status"] == status
        assert {"type", "title", "detail", "code", "retryable"} <= problem.keys()


async def test_limits_show_used_and_remaining_per_card_and_user(make_config: Any, make_client: Any) -> None:
    client = await make_client(make_config(limits={"user_daily_fen": 3_000_000}))
    await client.post("/v1/repayments", json=body(card="c1", amount=1_000_000), headers={"Idempotency-Key": "l1"})
    await client.post(
        "/v1/repayments", json=body(card="c2", channel="BOC", amount=500_000), headers={"Idempotency-Key": "l2"}
    )

    limits = await (await client.get("/v1/users/u1/limits")).json()

    assert limits["user"] == {"limit_fen": 3_000_000, "used_fen": 1_500_000, "remaining_fen": 1_500_000}
    assert limits["cards"] == [
        {"card_id": "c1", "channel": "ICBC", "limit_fen": 5_000_000, "used_fen": 1_000_000, "remaining_fen": 4_000_000},
        {"card_id": "c2", "channel": "BOC", "limit_fen": 2_000_000, "used_fen": 500_000, "remaining_fen": 1_500_000},
    ]
    assert limits["resets_at"].endswith("+08:00")
    assert limits["resets_at"][11:19] == "00:00:00"


async def test_user_daily_cap_declines_with_scope_user(make_config: Any, make_client: Any) -> None:
    client = await make_client(make_config(limits={"user_daily_fen": 1_500_000}))
    ok = await client.post("/v1/repayments", json=body(card="c1", amount=1_000_000), headers={"Idempotency-Key": "d1"})
    assert ok.status == 201

    declined = await client.post(
        "/v1/repayments", json=body(card="c2", amount=800_000), headers={"Idempotency-Key": "d2"}
    )

    assert declined.status == 422
    problem = await declined.json()
    assert problem["code"] == "DAILY_LIMIT_EXCEEDED"
    assert (problem["scope"], problem["limit_fen"], problem["remaining_fen"]) == ("user", 1_500_000, 500_000)
    assert sum(part["amount_fen"] for part in problem["suggested_plan"]) == 800_000


async def test_health_ready_and_metrics(make_config: Any, make_client: Any) -> None:
    client = await make_client(make_config())
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    await client.post("/v1/repayments", json=body(), headers={"Idempotency-Key": "m1"})

    text = await (await client.get("/metrics")).text()

    assert 'surge_gateway_requests_total{code="",route="/v1/repayments",status="201"} 1.0' in text
    assert "surge_gateway_ledger_commit_seconds_count 1.0" in text


async def test_admin_needs_the_bearer_token(make_config: Any, make_client: Any) -> None:
    client = await make_client(make_config())
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        response = await client.get("/admin/faults", headers=headers)
        assert response.status == 401
        assert (await response.json())["code"] == "UNAUTHORIZED"
    assert (await client.get("/admin/faults", headers=ADMIN)).status == 200


async def test_drain_turns_readyz_503_but_keeps_serving(make_config: Any, make_client: Any) -> None:
    client = await make_client(make_config())
    assert (await client.post("/admin/drain")).status == 401
    assert (await client.post("/admin/drain", headers=ADMIN)).status == 200

    ready = await client.get("/readyz")

    assert ready.status == 503
    assert (await ready.json())["code"] == "REPLICA_UNAVAILABLE"
    assert (await client.post("/v1/repayments", json=body(), headers={"Idempotency-Key": "dr"})).status == 201


async def test_behind_router_applies_only_the_replica_cap(make_config: Any, make_client: Any) -> None:
    client = await make_client(make_config(limits={"user_tps": 1, "global_tps": 1}), behind_router=True)
    statuses = [
        (await client.post("/v1/repayments", json=body(), headers={"Idempotency-Key": f"br{i}"})).status
        for i in range(5)
    ]
    assert statuses == [201] * 5


async def test_channels_lists_the_configured_banks_and_their_limits(make_config: Any, make_client: Any) -> None:
    client = await make_client(make_config())

    response = await client.get("/v1/channels")

    assert response.status == 200
    channels = (await response.json())["channels"]
    assert [channel["code"] for channel in channels] == ["ICBC", "BOC"]
    assert channels[0]["single_fen"] == 5_000_000
    assert channels[0]["card_daily_fen"] == 5_000_000
    assert channels[1]["card_daily_fen"] == 2_000_000
    assert all(channel["tps"] == 0 for channel in channels)


async def test_channels_report_the_bank_quota_and_the_caps_in_force_now(make_config: Any, make_client: Any) -> None:
    """`tps` is the channel's own quota; the money caps are the ones a charge would meet now (dynamic limits)."""
    raised = {"from": "2026-01-01T00:00:00+08:00", "until": "2099-01-01T00:00:00+08:00", "card_daily_fen": 9_000_000}
    config = make_config(
        channels=[{"code": "ICBC", "single_fen": 5_000_000, "card_daily_fen": 5_000_000, "tps": 40}],
        limits={"schedule": [raised]},
    )
    client = await make_client(config)

    channels = (await (await client.get("/v1/channels")).json())["channels"]

    assert channels == [
        {"code": "ICBC", "single_fen": 5_000_000, "card_daily_fen": 9_000_000, "tps": 40, "settlement": "sync"}
    ]


async def test_channels_say_which_are_settled_asynchronously(make_config: Any, make_client: Any) -> None:
    sync = {"code": "ICBC", "single_fen": 5_000_000, "card_daily_fen": 5_000_000}
    client = await make_client(make_config(channels=[sync, {**sync, "code": "CMB", "settlement": "async"}]))

    channels = (await (await client.get("/v1/channels")).json())["channels"]

    assert [(channel["code"], channel["settlement"]) for channel in channels] == [("ICBC", "sync"), ("CMB", "async")]
