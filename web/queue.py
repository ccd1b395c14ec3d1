"""Enqueueing operation messages by actor name (web/ never imports workers/)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from kms.commands import Route

logger = logging.getLogger("kms.web")


class Enqueuer:
    """Sends messages to actors by name (``actor(operation_id)``, mostly). A failed send loses nothing: the
    operation row is committed, and the scheduler re-sends what never started."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker

    @classmethod
    def for_redis(cls, url: str, namespace: str) -> Enqueuer:
        return cls(RedisBroker(url=url, namespace=namespace, middleware=[]))

    def send(self, route: Route, *args: Any) -> bool:
        return self.send_many([(route, args)])

    def send_many(self, items: Iterable[tuple[Route, tuple[Any, ...]]]) -> bool:
        try:
            for route, args in items:
                message: dramatiq.Message[Any] = dramatiq.Message(
                    queue_name=route.queue.value,
                    actor_name=route.actor_name,
                    args=args,
                    kwargs={},
                    options={},
                )
                self.broker.enqueue(message)
            return True
        except Exception as exc:  # Redis down: the sweep re-sends later
            logger.warning("enqueue failed (%s); the scheduler will re-send", type(exc).__name__)
            return False

    def ping(self) -> None:
        if isinstance(self.broker, RedisBroker):
            self.broker.client.ping()

    def close(self) -> None:
        self.broker.close()
