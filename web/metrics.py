"""GET /metrics (Prometheus text, prometheus-client) and the HTTP metrics.

State gauges (keys by state, operations in flight, queue depths, timers) are read
from the database and Redis at scrape time. With PROMETHEUS_MULTIPROC_DIR set
(`kms serve` sets it), the counters and histograms of every web and worker
process are served too (Dramatiq's message metrics, operations by kind and
status, their durations). Labels carry routes, queues, kinds and states — never
a key or operation id.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from models import repo
from web.context import Services, services

HTTP_REQUESTS = Counter("kms_http_requests_total", "HTTP requests", ["route", "method", "status"])
HTTP_SECONDS = Histogram(
    "kms_http_request_duration_seconds",
    "HTTP request latency",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, float("inf")),
)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        route = _route(request)
        HTTP_REQUESTS.labels(route, request.method, str(status)).inc()
        HTTP_SECONDS.labels(route, request.method).observe(time.perf_counter() - started)


class StateCollector(Collector):
    """Gauges read at scrape time (indexed counts and a Redis pipeline per queue)."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def collect(self) -> Iterator[Any]:
        from web.handlers.ops import queues_view

        with self.svc.db.read() as s:
            keys = repo.count_keys_by_state(s)
        family = GaugeMetricFamily("kms_keys", "Keys by state", labels=["state"])
        for state, n in sorted(keys.items()):
            family.add_metric([state], n)
        yield family
        view = queues_view(self.svc)
        depth = GaugeMetricFamily(
            "kms_queue_depth", "Queue depth by queue and kind", labels=["queue", "kind"]
        )
        age = GaugeMetricFamily(
            "kms_queue_oldest_ready_age_seconds", "Age of the oldest waiting work", labels=["queue"]
        )
        for q in view["queues"]:
            depth.add_metric([q["name"], "ready"], q["ready"])
            depth.add_metric([q["name"], "delayed"], q["delayed"])
            depth.add_metric([q["name"], "dead"], q["dead_lettered"])
            age.add_metric([q["name"]], q["oldest_ready_age_s"] or 0.0)
        yield depth
        yield age
        timers = GaugeMetricFamily("kms_timers_pending", "Deadlines waiting", labels=["kind"])
        timers.add_metric(["delete_key"], view["timers"]["pending_deletions"])
        timers.add_metric(["expire_material"], view["timers"]["material_expiries"])
        yield timers
        yield GaugeMetricFamily(
            "kms_workers_alive",
            "Workers with a recent heartbeat",
            value=sum(1 for w in view["workers"] if w["alive"]),
        )


def scrape(svc: Services) -> bytes:
    state = CollectorRegistry()
    state.register(StateCollector(svc))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)
        return generate_latest(processes) + generate_latest(state)
    return generate_latest(REGISTRY) + generate_latest(state)


async def metrics_handler(request: web.Request) -> web.Response:
    svc = services(request)
    body = await svc.run(scrape, svc)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
