"""A channel's bank quota (`tps`) is the bank's, granted to the merchant: N active-active replicas share it.

Each replica paces its calls to a channel with its share (`--bank-share`, 1/N from the cluster), so the cluster
together never calls the bank more than `tps` times in a second — before, two replicas with `tps = 4` sent up to
8. With `queue_timeout_ms = 0` a call past the quota is refused at once (503 CHANNEL_BUSY), so the 201s of a
burst count the bank calls the cluster made.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import aiohttp

from tests.mock_gateway.cluster.conftest import FAST_CHANNEL, StartCluster
from tests.mock_gateway.cluster.traffic import repayment

TPS = 4
PAYMENTS = 24


async def test_active_active_replicas_share_the_channels_bank_quota(start_cluster: StartCluster) -> None:
    channel = {**FAST_CHANNEL, "tps": TPS, "queue_timeout_ms": 0, "latency_ms": {"median": 1, "p99": 2}}
    cluster = start_cluster(replicas=2, router={"mode": "active-active"}, channels=[channel])

    async def post(session: aiohttp.ClientSession, k: int) -> tuple[int, str]:
        body = repayment(f"u{k:03d}", f"u{k:03d}-c1", 1000)
        headers = {"Idempotency-Key": f"share-{k:03d}"}
        async with session.post(f"{cluster.url}/v1/repayments", json=body, headers=headers) as response:
            await response.read()
            return response.status, response.headers.get("X-Replica", "")

    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        answers = await asyncio.gather(*(post(session, k) for k in range(PAYMENTS)))
        span_s = time.monotonic() - started
    statuses = Counter(status for status, _ in answers)
    assert set(statuses) <= {201, 503}, statuses
    served_by = {replica for status, replica in answers if status == 201}
    assert served_by == {"r1", "r2"}, f"the router must spread the burst over both replicas: {answers}"
    allowed = TPS * (1 + int(span_s))  # a burst longer than a second may see the quota renewed
    assert 2 <= statuses[201] <= allowed, f"{statuses[201]} bank calls in {span_s:.2f} s for a quota of {TPS}/s"
