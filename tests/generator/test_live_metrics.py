"""The --metrics-port collector on hand-made windows, and the Grafana dashboard's queries against the metric
names surge actually exports (generator endpoint, replica and router /metrics)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from loadtests.generator.live_metrics import LiveMetrics
from loadtests.generator.windows import Window
from mock_gateway.cluster.events import RouterMetrics
from mock_gateway.replica.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "surge.json"


def _scrape(registry: CollectorRegistry) -> dict[tuple[str, str, str], float]:
    return {
        (sample.name, sample.labels.get("outcome", ""), sample.labels.get("le", "")): sample.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    }


def test_counters_and_histograms_sum_every_delta() -> None:
    metrics = LiveMetrics()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    first, second, again = Window(0, offered=5, sent=4, late=1, dropped=1), Window(1, offered=3, sent=3), Window(0)
    for ms in (3, 40, 40, 700):
        first.record("succeeded", intended_us=ms * 1000, service_us=1000)
    second.record("declined", intended_us=20_000, service_us=1000)
    again.record("succeeded", intended_us=12_000_000, service_us=1000)  # a straggler for second 0

    metrics.add([first, second])
    metrics.add([again])
    samples = _scrape(registry)

    assert samples[("surge_offered_total", "", "")] == 8
    assert samples[("surge_sent_total", "", "")] == 7
    assert samples[("surge_late_total", "", "")] == 1
    assert samples[("surge_dropped_total", "", "")] == 1
    assert samples[("surge_attempts_total", "succeeded", "")] == 5
    assert samples[("surge_attempts_total", "declined", "")] == 1
    assert samples[("surge_attempts_total", "timeout", "")] == 0
    buckets = {le: samples[("surge_latency_seconds_bucket", "succeeded", le)] for le in ("0.005", "0.05", "1", "10")}
    assert buckets == {"0.005": 1, "0.05": 3, "1": 4, "10": 4}
    assert samples[("surge_latency_seconds_bucket", "succeeded", "+Inf")] == 5
    assert samples[("surge_latency_seconds_count", "succeeded", "")] == 5
    assert abs(samples[("surge_latency_seconds_sum", "succeeded", "")] - 12.783) < 0.02  # HDR: 3 digits
    assert second.t == 1  # the caller's windows are left as they were


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    generator = CollectorRegistry(auto_describe=False)
    live = LiveMetrics()
    window = Window(0)
    window.record("succeeded", intended_us=1000, service_us=1000)
    live.add([window])
    generator.register(live)
    exported: set[str] = set()
    replica, router = Metrics("r1"), RouterMetrics()
    replica.observe_request("/v1/repayments", 201, "", 0.01)
    replica.ledger_commit.observe(0.001)
    replica.ledger_batch.observe(1)
    replica.cap_rejections.labels(scope="card").inc()
    router.rejected.labels(code="RATE_LIMITED").inc()
    router.retries.labels(reason="connect").inc()
    router.replica_up.labels(replica="r1").set(1)
    router.count_answer("r1", 201)
    router.latency.observe(0.01)
    for registry in (generator, replica.registry, router.registry):
        for family in text_string_to_metric_families(generate_latest(registry).decode()):
            exported.update(sample.name for sample in family.samples)

    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    queried = {name for expr in queries for name in re.findall(r"\bsurge_[a-z_]+", expr)}
    assert queried and queried <= exported, sorted(queried - exported)
    assert {"surge_offered_total", "surge_latency_seconds_bucket", "surge_gateway_requests_total"} <= queried
