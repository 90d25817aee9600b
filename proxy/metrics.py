"""Prometheus metrics at /metrics: requests, latency, feedback calls, and the log queue."""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from proxy.gateway.exchange import Exchange
from proxy.gateway.recorder import Recorder
from proxy.state import METRICS

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
NO_STATUS = "none"


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


class Metrics:
    """One registry per app, so several apps in one process keep separate counts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "relaylog_requests",
            "Forwarded /v1 requests by HTTP status and outcome.",
            ["status", "outcome"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "relaylog_request_duration_seconds",
            "Time from receiving a forwarded request to its last byte.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
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
        # Label lookups cost more than the increment; keep each child once created.
        self._by_result: dict[tuple[int | None, str], Counter] = {}

    def watch(self, recorder: Recorder) -> None:
        self._queue.recorder = recorder

    def observe(self, exchange: Exchange) -> None:
        """Count one finished exchange; the recorder calls this as it receives it."""
        key = (exchange.status, exchange.outcome)
        child = self._by_result.get(key)
        if child is None:
            status = NO_STATUS if exchange.status is None else str(exchange.status)
            child = self._by_result[key] = self._requests.labels(status, exchange.outcome)
        child.inc()
        if exchange.latency_ms is not None:
            self._latency.observe(exchange.latency_ms / 1000)

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
