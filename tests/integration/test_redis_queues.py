"""The queue views and dead-letter moves on a real Redis (Dramatiq's RedisBroker layout)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from kms.commands import ROUTE_CREATE, Route
from web.queue import Enqueuer, QueueInspector

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    url = os.environ.get("KMS_TEST_REDIS_URL")
    if url:
        redis.Redis.from_url(url).ping()
        yield url
        return
    from kms.supervisor import start_embedded_redis

    child, url = start_embedded_redis(tmp_path / "redis", dict(os.environ))
    yield url
    child.stop(5)


def test_counts_dead_letters_and_requeue(redis_url: str) -> None:
    namespace = f"kms-q-{uuid.uuid4().hex[:8]}"
    broker = RedisBroker(url=redis_url, namespace=namespace, middleware=[])
    broker.declare_queue("create")
    try:
        Enqueuer(broker).send_many([(_route(), ("op-1",)), (_route(), ("op-2",)), (_route(), ("op-3",))])
        inspector = QueueInspector(broker)
        assert inspector.counts(["create"])["create"] == {"ready": 3, "delayed": 0, "dead_lettered": 0}
        consumer = broker.consume("create", prefetch=1, timeout=1000)
        message = next(m for m in consumer if m is not None)
        consumer.nack(message)  # what Dramatiq does when retries are exhausted
        consumer.close()
        assert inspector.counts(["create"])["create"]["dead_lettered"] == 1
        letters = inspector.dead_letters("create", 0, 10)
        assert len(letters) == 1 and letters[0].operation_id == message.args[0]
        assert letters[0].actor == "create_key" and letters[0].failed_at_ms > 0
        assert inspector.find_queue_of(letters[0].message_id, ["commands", "create"]) == "create"
        taken = inspector.take_dead_letter("create", letters[0].message_id)
        assert taken is not None and taken.args == message.args
        assert inspector.take_dead_letter("create", letters[0].message_id) is None  # only once
        assert inspector.counts(["create"])["create"]["dead_lettered"] == 0
        assert any(True for _ in inspector.workers())  # the consumer's heartbeat
    finally:
        broker.flush_all()
        broker.client.delete(*broker.client.keys(f"{namespace}:*") or [f"{namespace}:none"])
        broker.close()


def _route() -> Route:
    return ROUTE_CREATE
