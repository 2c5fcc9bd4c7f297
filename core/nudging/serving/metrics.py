"""`/metrics` in Prometheus' text format (prometheus-client), one registry per app.

Queue depth, running rows and job outcomes are read from the worker at scrape time, so they are
as true as `/health`. Latencies are what a client sees: time to first token from submission
(queueing included) to the first text event, and inter-token latency as one request's mean gap
between output tokens after the first.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..results import Result, StreamEvent
from .worker import Done, Worker

_LATENCY = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_SHARE = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)


class _WorkerCollector(Collector):
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Any]:
        s = self.worker.status()
        yield GaugeMetricFamily("nudging_queue_depth", "Requests waiting for the engine.", value=s["queued"])
        yield GaugeMetricFamily("nudging_running_rows", "Requests decoding now (rows of the batch).", value=s["running"])
        jobs = CounterMetricFamily("nudging_jobs", "Jobs the engine ended, by outcome.", labels=["outcome"])
        for outcome in ("served", "cancelled", "failed"):
            jobs.add_metric([outcome], s[outcome])
        yield jobs


class Metrics:
    """The server's metrics; `track()` gives a per-request observer of the items its job yields."""

    def __init__(self, worker: Worker, paths: frozenset[str]) -> None:
        self.registry = CollectorRegistry()
        self.paths = paths
        self.registry.register(_WorkerCollector(worker))
        self.requests = Counter("nudging_requests", "HTTP responses by path and status.", ["path", "status"], registry=self.registry)
        self.ttft = Histogram("nudging_time_to_first_token_seconds", "Submission to first text, queueing included.", buckets=_LATENCY, registry=self.registry)
        self.itl = Histogram("nudging_inter_token_latency_seconds", "Mean gap between one request's output tokens after the first.", buckets=_LATENCY, registry=self.registry)
        self.tokens = Counter("nudging_output_tokens", "Output tokens (base-view ids) by the model that wrote them.", ["source"], registry=self.registry)
        self.prompt_tokens = Counter("nudging_prompt_tokens", "Prompt tokens (base-view ids).", registry=self.registry)
        self.share = Histogram("nudging_nudge_share", "Per request: output tokens the nudger wrote / all output tokens.", buckets=_SHARE, registry=self.registry)

    def count(self, path: str, status: int) -> None:
        self.requests.labels(path if path in self.paths else "other", str(status)).inc()

    def track(self, submitted: float) -> _Tracker:
        return _Tracker(self, submitted)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _Tracker:
    """Sees one request's items as the HTTP side receives them."""

    def __init__(self, metrics: Metrics, submitted: float) -> None:
        self.m, self.submitted, self.first = metrics, submitted, None

    def __call__(self, item: Any) -> None:
        now = time.monotonic()
        if isinstance(item, StreamEvent) and item.text and self.first is None:
            self.first = now
            self.m.ttft.observe(now - self.submitted)
        elif isinstance(item, Done) and isinstance(item.result, Result):
            st = item.result.stats
            self.m.tokens.labels("base").inc(st.base_tokens)
            self.m.tokens.labels("nudger").inc(st.nudger_tokens)
            self.m.prompt_tokens.inc(st.prompt_tokens)
            if st.output_tokens:
                self.m.share.observe(st.nudge_share)
            if self.first is not None and st.output_tokens > 1:
                self.m.itl.observe((now - self.first) / (st.output_tokens - 1))
