"""Prometheus metrics at /metrics: requests, latency, feedback calls, and the log queue."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from proxy.gateway.exchange import Exchange
from proxy.gateway.recorder import Recorder
from proxy.state import METRICS

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
NO_STATUS = "none"
# The `le` labels, as prometheus_client writes the bounds.
BUCKET_LABELS = tuple(repr(float(bound)) for bound in LATENCY_BUCKETS)


class QueueCollector(Collector):
    """Reads the recorder's counters when scraped, so the write path pays nothing for them."""

    def __init__(self) -> None:
        self.recorder: Recorder | None = None

    def collect(self) -> Iterator[Metric]:
        recorder = self.recorder
        if recorder is None:
            return
        yield GaugeMetricFamily(
            "relaylog_requests_in_flight", "Forwarded requests being served.", recorder.serving
        )
        yield GaugeMetricFamily(
            "relaylog_log_queue_depth", "Exchanges waiting to be written.", recorder.depth
        )
        yield GaugeMetricFamily(
            "relaylog_log_queue_capacity",
            "Queue bound; exchanges beyond it are dropped.",
            recorder.queue_size,
        )
        yield CounterMetricFamily(
            "relaylog_log_rows_written", "Rows committed to the store.", recorder.written
        )
        yield CounterMetricFamily(
            "relaylog_log_rows_dropped",
            "Exchanges served but not logged because the queue was full.",
            recorder.dropped,
        )
        yield CounterMetricFamily(
            "relaylog_log_failed_commits",
            "Commits that failed and were retried.",
            recorder.failed_commits,
        )


class RequestCollector(Collector):
    """Forwarded requests by status and outcome, and their latency histogram.

    Every forwarded call is counted, so the counting is plain integers on the event loop (a
    prometheus_client child takes a lock and several calls per increment); the families are
    built from them when scraped, in the shape prometheus_client's Counter and Histogram give.
    """

    def __init__(self) -> None:
        # (status, outcome) -> [count, created]
        self.requests: dict[tuple[int | None, str], list[float]] = {}
        # Observations per bucket (not cumulative); the last one is +Inf.
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.created = time.time()

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "relaylog_requests",
            "Forwarded /v1 requests by HTTP status and outcome.",
            labels=["status", "outcome"],
        )
        for (status, outcome), (count, created) in list(self.requests.items()):
            label = NO_STATUS if status is None else str(status)
            requests.add_metric([label, outcome], count, created=created)
        yield requests
        cumulative, running = [], 0
        for bound, count in zip((*BUCKET_LABELS, "+Inf"), self.buckets, strict=True):
            running += count
            cumulative.append((bound, running))
        latency = HistogramMetricFamily(
            "relaylog_request_duration_seconds",
            "Time from receiving a forwarded request to its last byte.",
            buckets=cumulative,
            sum_value=self.latency_sum,
        )
        latency.add_sample("relaylog_request_duration_seconds_created", {}, self.created)
        yield latency


class Metrics:
    """One registry per app, so several apps in one process keep separate counts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._calls = RequestCollector()
        self.registry.register(self._calls)
        self._feedback = Counter(
            "relaylog_feedback_requests",
            "Calls to the feedback, score and request-detail endpoints by endpoint and status.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self._ratings = Counter(
            "relaylog_feedback",
            "Request ratings stored (API, batch items, legacy body), by rating.",
            ["rating"],
            registry=self.registry,
        )
        self._scores = Counter(
            "relaylog_scores", "Named scores stored on requests.", registry=self.registry
        )
        self._queue = QueueCollector()
        self.registry.register(self._queue)

    def watch(self, recorder: Recorder) -> None:
        self._queue.recorder = recorder

    def observe(self, exchange: Exchange) -> None:
        """Count one finished exchange; the recorder calls this as it receives it."""
        calls = self._calls
        key = (exchange.status, exchange.outcome)
        counted = calls.requests.get(key)
        if counted is None:
            calls.requests[key] = [1, time.time()]
        else:
            counted[0] += 1
        if exchange.latency_ms is not None:
            seconds = exchange.latency_ms / 1000
            calls.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
            calls.latency_sum += seconds

    def count_feedback(self, endpoint: str, status: int) -> None:
        self._feedback.labels(endpoint, str(status)).inc()

    def count_rating(self, rating: bool) -> None:
        self._ratings.labels("positive" if rating else "negative").inc()

    def count_scores(self, count: int) -> None:
        self._scores.inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def metrics(request: web.Request) -> web.Response:
    """`GET /metrics` in Prometheus' text format."""
    return web.Response(
        body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
