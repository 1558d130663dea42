"""Prometheus metrics for one replica, on its own registry so that several apps (tests, a cluster in one
process) never collide in the global one.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SETTLE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0)
COMMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


class Metrics:
    """The replica's instruments; `render()` is the body of GET /metrics."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, replica: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = {"replica": replica}
        self.requests = Counter(
            "surge_gateway_requests",
            "HTTP requests answered, by route, status and problem code",
            ["route", "status", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "surge_gateway_request_seconds",
            "Time from request received to response ready",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cap_rejections = Counter(
            "surge_gateway_cap_rejections",
            "Requests refused by a cap, by scope (global/replica/user/card/single/channel)",
            ["scope"],
            registry=self.registry,
        )
        self.ledger_commit = Histogram(
            "surge_gateway_ledger_commit_seconds",
            "Duration of one ledger transaction (a group-commit batch)",
            buckets=COMMIT_BUCKETS,
            registry=self.registry,
        )
        self.ledger_batch = Histogram(
            "surge_gateway_ledger_batch_size",
            "Requests recorded per ledger transaction",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=self.registry,
        )
        self.in_flight = Gauge("surge_gateway_in_flight", "Repayment requests being processed", registry=self.registry)
        self.bank_in_flight = Gauge(
            "surge_gateway_bank_in_flight",
            "Simulated bank calls holding a channel slot, by channel",
            ["channel"],
            registry=self.registry,
        )
        self.settlement_backlog = Gauge(
            "surge_gateway_settlement_backlog",
            "Accepted payments this replica holds that the bank has not settled yet, by channel",
            ["channel"],
            registry=self.registry,
        )
        self.settlement_in_flight = Gauge(
            "surge_gateway_settlement_in_flight",
            "Of the backlog, the payments this replica has asked the bank about and awaits the answer for, by channel",
            ["channel"],
            registry=self.registry,
        )
        self.settle_seconds = Histogram(
            "surge_gateway_settle_seconds",
            "Time from acceptance to the final state written in the ledger, by channel",
            ["channel"],
            buckets=SETTLE_BUCKETS,
            registry=self.registry,
        )
        self.settlements = Counter(
            "surge_gateway_settlements",
            "Settlement steps by channel and outcome: succeeded, failed (BANK_DECLINED), unknown (the bank's answer "
            "was lost; re-queried), fenced (another replica took the payment over; nothing written)",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.settlement_takeovers = Counter(
            "surge_gateway_settlement_takeovers",
            "Pending payments taken over from a replica that died or whose lease ran out",
            registry=self.registry,
        )
        self.callbacks = Counter(
            "surge_gateway_callbacks",
            "Callback deliveries by outcome: delivered (2xx), refused (other status), error (no answer in time), "
            "dropped (callback_loss fault), duplicate (callback_duplicate fault: sent again), gave_up (attempts "
            "exhausted)",
            ["outcome"],
            registry=self.registry,
        )
        self.info = Gauge(
            "surge_gateway_replica_info",
            "Constant 1, labelled with the replica name",
            ["replica"],
            registry=self.registry,
        )
        self.info.labels(**labels).set(1)
        self._children: dict[tuple[str, int, str], tuple[Counter, Histogram]] = {}

    def observe_request(self, route: str, status: int, code: str, seconds: float) -> None:
        """Per request, so the labelled children are looked up once and kept."""
        key = (route, status, code)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(route, str(status), code), self.latency.labels(route))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_commit(self, batch_size: int, seconds: float) -> None:
        """Called from the ledger's writer thread; prometheus-client instruments are thread-safe."""
        self.ledger_commit.observe(seconds)
        self.ledger_batch.observe(batch_size)

    def render(self) -> bytes:
        return generate_latest(self.registry)
