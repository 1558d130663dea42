"""`--metrics-port`: the run as Prometheus metrics on the Locust master, for a Grafana next to the gateway's own.

Fed with the same per-second deltas the master merges into windows.jsonl (recording.leader.RunLeader.on_windows),
so a scrape and the run folder can never disagree: a counter here is the sum of the windows merged so far.

    surge_offered_total                      arrivals the schedule offered (open model)
    surge_sent_total / _late_total / _dropped_total
    surge_attempts_total{outcome}            attempts by outcome class (succeeded, declined, rate_limited, ...)
    surge_latency_seconds{outcome}           histogram of latency from the *intended* send time (no coordinated
                                             omission), per outcome class

Counters keep counting across the tests of one web UI session, as Prometheus counters must. The server binds to
127.0.0.1 only (a load tool's internals are nobody else's business) and is off unless a port is given.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
from hdrh.histogram import HdrHistogram
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from loadtests.generator.windows import ARRIVAL_FIELDS, Window
from runfolder.outcomes import OUTCOME_CLASSES

BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
HOST = "127.0.0.1"


class LiveMetrics(Collector):
    """A running total of every merged delta, turned into metric families at each scrape."""

    def __init__(self) -> None:
        self.total = Window(0)

    def add(self, windows: list[Window]) -> None:
        for window in windows:
            self.total.t = window.t  # a running total over every second: its own `t` means nothing
            self.total.merge(window)

    def collect(self) -> Iterator[Metric]:
        total = self.total
        for name in ARRIVAL_FIELDS:
            counter = CounterMetricFamily(f"surge_{name}", f"surge: arrivals {name} (open model)")
            counter.add_metric([], getattr(total, name))
            yield counter
        attempts = CounterMetricFamily("surge_attempts", "surge: attempts by outcome class", labels=["outcome"])
        latency = HistogramMetricFamily(
            "surge_latency_seconds", "surge: latency from the intended send time, by outcome", labels=["outcome"]
        )
        for outcome in OUTCOME_CLASSES:
            stats = total.classes.get(outcome)
            attempts.add_metric([outcome], stats.count if stats is not None else 0)
            if stats is None or stats.count == 0:
                continue
            values_s, counts = _buckets(stats.intended)
            cumulative = [int(counts[values_s <= bound].sum()) for bound in BUCKETS_S]
            buckets = [(f"{bound:g}", float(n)) for bound, n in zip(BUCKETS_S, cumulative, strict=True)]
            buckets.append(("+Inf", float(counts.sum())))
            latency.add_metric([outcome], buckets, sum_value=float(np.dot(values_s, counts)))
        yield attempts
        yield latency


def _buckets(histogram: HdrHistogram) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """The non-empty buckets of a histogram: each one's highest equivalent value in seconds, and its count.

    Read from the library's own counts array and index arithmetic: a scrape meets a few hundred non-empty
    buckets of ~23,000, so only those are converted."""
    counts = np.ctypeslib.as_array(histogram.counts)
    index = np.flatnonzero(counts)
    highest_us = [histogram.get_highest_equivalent_value(histogram.get_value_from_index(int(i))) for i in index]
    return np.asarray(highest_us, dtype=np.float64) / 1e6, counts[index].astype(np.int64)


def serve(port: int) -> LiveMetrics:
    """Start the endpoint on 127.0.0.1:`port` (a background server greenlet under gevent)."""
    metrics = LiveMetrics()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    start_http_server(port, addr=HOST, registry=registry)
    return metrics
