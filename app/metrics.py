"""Prometheus metrics, one registry per app (so tests and several apps never collide).

- `uvac_http_request_duration_seconds{method, route, status}`: latency per route template
  (`/v1/jobs/{job_id}`, never the raw path, so ids do not explode the label space);
- `uvac_inference_batch_size` and `uvac_inference_batch_duration_seconds`: what the
  micro-batcher achieves;
- `uvac_model_info{name, version, ref, sha256}`: 1 for the model being served;
- `uvac_jobs{status}`: jobs known to the queue, refreshed at each scrape;
- `uvac_jobs_submitted_total{kind}`: jobs this process enqueued;
- `uvac_streams_open`, `uvac_stream_decision_latency_seconds` (from the arrival of a
  window's last sample to its decision being sent) and `uvac_streams_closed_total{code}`:
  live streams (`WS /v1/stream`);
- `uvac_stream_early_starts_total{outcome}`: stream windows started before they were whole,
  by what became of the start (`used`; `dropped`: no inference lane was free in time, a sign
  of a host near its limit; `unusable`; `superseded`: a later sample of the window showed the
  start could not finish it; a window not yet whole is then begun again on all it has heard,
  once, so it may count two).
"""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_TYPE_LATEST", "AppMetrics", "MetricsMiddleware"]

_LATENCY_BUCKETS = (
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
API_PREFIX = "/v1"


class AppMetrics:
    """The collectors of one app instance."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_latency = Histogram(
            "uvac_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference_batch_size = Histogram(
            "uvac_inference_batch_size",
            "Clips per forward pass of the micro-batcher",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.inference_batch_duration = Histogram(
            "uvac_inference_batch_duration_seconds",
            "Time of one batched forward pass (features included)",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_info = Gauge(
            "uvac_model_info",
            "The model version being served (value 1)",
            ["name", "version", "ref", "sha256"],
            registry=self.registry,
        )
        self.jobs = Gauge(
            "uvac_jobs", "Jobs known to the queue by status", ["status"], registry=self.registry
        )
        self.jobs_submitted = Counter(
            "uvac_jobs_submitted",
            "Jobs enqueued by this process",
            ["kind"],
            registry=self.registry,
        )

        self.streams_open = Gauge(
            "uvac_streams_open", "Live streams open now", registry=self.registry
        )
        self.stream_decision_latency = Histogram(
            "uvac_stream_decision_latency_seconds",
            "From a window's last sample arriving to its decision being sent",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.streams_closed = Counter(
            "uvac_streams_closed",
            "Live streams ended, by WebSocket close code",
            ["code"],
            registry=self.registry,
        )
        self.stream_early_starts = Counter(
            "uvac_stream_early_starts",
            "Stream windows started before they were whole, by what became of the start",
            ["outcome"],
            registry=self.registry,
        )

    def observe_early_start(self, outcome: str) -> None:
        self.stream_early_starts.labels(outcome=outcome).inc()

    def observe_batch(self, size: int, seconds: float) -> None:
        self.inference_batch_size.observe(size)
        self.inference_batch_duration.observe(seconds)

    def set_served_model(self, *, name: str, version: int, ref: str, sha256: str) -> None:
        self.model_info.clear()
        self.model_info.labels(name=name, version=str(version), ref=ref, sha256=sha256).set(1)

    def set_job_counts(self, counts: dict[str, int]) -> None:
        for status, count in counts.items():
            self.jobs.labels(status=status).set(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Times every HTTP request and labels it with the matched route's template."""

    def __init__(self, app: ASGIApp, *, metrics: AppMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            self.metrics.request_latency.labels(
                method=scope.get("method", ""),
                route=_route_template(scope),
                status=str(status),
            ).observe(time.perf_counter() - started)


def _route_template(scope: Scope) -> str:
    """The matched route's template, e.g. `/v1/jobs/{job_id}`; unmatched paths share one label.

    FastAPI keeps included routes as the router's own route objects, whose path lacks the
    include prefix; the business router is included at `/v1` and at the root, so the
    prefix is recovered from the request path.
    """
    route = scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str):
        return "unmatched"
    path = scope.get("path", "")
    if path.startswith(API_PREFIX + "/") and not template.startswith(API_PREFIX + "/"):
        return API_PREFIX + template
    return template
