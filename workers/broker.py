"""The Dramatiq broker of the workers: Redis in production, a stub in unit tests."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from workers.failures import OperationFailures
from workers.metrics import MessageMetrics

#: Workers count as dead after this long without a heartbeat; their
#: unacknowledged messages then go back on the queue (DESIGN §4: within a minute).
HEARTBEAT_TIMEOUT_MS = 15_000
#: Chance (per million broker commands) of running that maintenance.
MAINTENANCE_CHANCE = 50_000


def middleware() -> list[dramatiq.Middleware]:
    return [
        AgeLimit(),
        TimeLimit(time_limit=120_000),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        # after_* hooks run in reverse order: OperationFailures must come before
        # Retries here so that it sees the message Retries has just failed.
        MessageMetrics(),
        OperationFailures(),
        Retries(max_retries=8, min_backoff=200, max_backoff=10_000),
        CurrentMessage(),
    ]


def make_redis_broker(url: str, namespace: str) -> RedisBroker:
    return RedisBroker(
        url=url,
        namespace=namespace,
        middleware=middleware(),
        heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
        maintenance_chance=MAINTENANCE_CHANCE,
    )


def make_stub_broker() -> StubBroker:
    broker = StubBroker(middleware=middleware())
    broker.emit_after("process_boot")
    return broker


def setup_broker() -> dramatiq.Broker:
    """The broker for this process: KMS_REDIS_URL, or a stub when KMS_BROKER=stub (unit tests)."""
    if os.environ.get("KMS_BROKER") == "stub":
        broker: dramatiq.Broker = make_stub_broker()
    else:
        url = os.environ.get("KMS_REDIS_URL")
        if not url:
            raise SystemExit("KMS_REDIS_URL is not set; workers need the Redis that carries the queues")
        broker = make_redis_broker(url, os.environ.get("KMS_QUEUE_NAMESPACE") or "kms")
    dramatiq.set_broker(broker)
    return broker
