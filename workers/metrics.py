"""Worker metrics (Prometheus): Dramatiq's message metrics and the operations'
outcomes and durations. Under `kms serve` every process writes to the shared
PROMETHEUS_MULTIPROC_DIR, and the web's /metrics serves them all; no label
carries a key or operation id."""

from __future__ import annotations

import time
from typing import Any

import dramatiq
from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter("dramatiq_messages_total", "Messages processed", ["queue_name", "actor_name"])
ERRORS = Counter("dramatiq_message_errors_total", "Messages that raised", ["queue_name", "actor_name"])
RETRIES = Counter("dramatiq_message_retries_total", "Messages retried", ["queue_name", "actor_name"])
DEAD = Counter(
    "dramatiq_message_dead_lettered_total", "Messages out of retries", ["queue_name", "actor_name"]
)
IN_PROGRESS = Gauge(
    "dramatiq_messages_inprogress",
    "Messages being processed",
    ["queue_name", "actor_name"],
    multiprocess_mode="livesum",
)
DURATION = Histogram(
    "dramatiq_message_duration_milliseconds",
    "Time spent processing a message",
    ["queue_name", "actor_name"],
    buckets=(5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000, 30000, float("inf")),
)
OPERATIONS = Counter("kms_operations_total", "Operations finished, by kind and status", ["kind", "status"])
OPERATION_SECONDS = Histogram(
    "kms_operation_duration_seconds",
    "Acceptance to finish of an operation",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, float("inf")),
)


def operation_finished(kind: str, status: str, seconds: float) -> None:
    OPERATIONS.labels(kind, status).inc()
    OPERATION_SECONDS.labels(kind).observe(max(0.0, seconds))


class MessageMetrics(dramatiq.Middleware):
    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        IN_PROGRESS.labels(message.queue_name, message.actor_name).inc()
        self._started[message.message_id] = time.perf_counter()

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        labels = (message.queue_name, message.actor_name)
        IN_PROGRESS.labels(*labels).dec()
        started = self._started.pop(message.message_id, None)
        if started is not None:
            DURATION.labels(*labels).observe((time.perf_counter() - started) * 1000)
        MESSAGES.labels(*labels).inc()
        if exception is not None:
            ERRORS.labels(*labels).inc()
            (DEAD if message.failed else RETRIES).labels(*labels).inc()

    after_skip_message = after_process_message
