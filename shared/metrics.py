"""Prometheus metrics of one service (its own registry, so services sharing a process stay apart),
and the ASGI middleware that times requests and carries the correlation id."""

from __future__ import annotations

import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import error_response
from shared.logging import correlation_id_var, get_logger

log = get_logger(__name__)

CORRELATION_HEADER = "x-correlation-id"


class ServiceMetrics:
    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = {"service": service}
        self.http_requests = Counter(
            "imi_http_requests_total", "HTTP requests answered", ["method", "route", "status"], registry=self.registry
        )
        self.http_latency = Histogram(
            "imi_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.events_published = Counter(
            "imi_events_published_total",
            "Events the outbox relay published with a broker confirm",
            registry=self.registry,
        )
        self.events_consumed = Counter(
            "imi_events_consumed_total",
            "Events taken from this service's queue, by outcome (handled, duplicate, retried, dead_lettered, requeued)",
            ["event_type", "outcome"],
            registry=self.registry,
        )
        self.outbox_backlog = Gauge(
            "imi_outbox_backlog", "Events committed but not yet confirmed by the broker", registry=self.registry
        )
        self.consumer_lag = Gauge(
            "imi_consumer_lag", "Messages waiting in this service's queue", registry=self.registry
        )
        self.dead_letters = Gauge(
            "imi_dead_letters", "Messages in this service's dead-letter queue", registry=self.registry
        )
        self.consumers = Gauge("imi_consumers", "Consumers registered with the broker", registry=self.registry)
        self.broker_connected = Gauge("imi_broker_connected", "1 while connected to the broker", registry=self.registry)
        self.info = Gauge(
            "imi_service_info", "The service this process answers for", ["service"], registry=self.registry
        )
        self.info.labels(**labels).set(1)

    def observe_event(self, event_type: str, outcome: str) -> None:
        self.events_consumed.labels(event_type=event_type, outcome=outcome).inc()


class RequestContextMiddleware:
    """Sets the correlation id for the request (from ``X-Correlation-ID`` or new), echoes it back,
    and records the request in the service's metrics under its route template (never the raw path,
    which would carry ids)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(CORRELATION_HEADER.encode())
        correlation = incoming.decode("latin-1")[:100] if incoming else str(uuid.uuid4())
        token = correlation_id_var.set(correlation)
        status = 500
        started = time.perf_counter()

        started_response = False

        async def send_with_header(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                started_response = True
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((CORRELATION_HEADER.encode(), correlation.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        except Exception as exc:
            # Answered here, inside the request's correlation context, so the log line and the
            # response carry the id the caller can quote.
            if status != 500 or started_response:
                raise
            log.exception("unhandled error", error=repr(exc))
            response = error_response(500, "internal_error", f"unexpected error; quote correlation id {correlation}")
            await response(scope, receive, send_with_header)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            self.metrics.http_requests.labels(method=method, route=template, status=str(status)).inc()
            self.metrics.http_latency.labels(method=method, route=template).observe(time.perf_counter() - started)
            correlation_id_var.reset(token)
