"""Enqueueing operation messages by actor name (web/ never imports workers/)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis

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
        messages: list[dramatiq.Message[Any]] = [
            dramatiq.Message(
                queue_name=route.queue.value, actor_name=route.actor_name, args=args, kwargs={}, options={}
            )
            for route, args in items
        ]
        try:
            if isinstance(self.broker, RedisBroker) and len(messages) > 1:
                self._pipelined(self.broker, messages)
            else:
                for message in messages:
                    self.broker.enqueue(message)
            return True
        except Exception as exc:  # Redis down: the sweep re-sends later
            logger.warning("enqueue failed (%s); the scheduler will re-send", type(exc).__name__)
            return False

    @staticmethod
    def _pipelined(broker: RedisBroker, messages: list[dramatiq.Message[Any]]) -> None:
        """Many enqueues in one round trip: the same dispatch script and arguments
        as ``RedisBroker.enqueue``, sent through a pipeline."""
        dispatch = broker.scripts["dispatch"]
        max_unpack = broker._max_unpack_size()
        with broker.client.pipeline(transaction=False) as pipe:
            for message in messages:
                redis_id = str(uuid.uuid4())
                message = message.copy(options={"redis_message_id": redis_id})
                args = [
                    "enqueue",
                    current_millis(),
                    message.queue_name,
                    broker.broker_id,
                    broker.heartbeat_timeout,
                    broker.dead_message_ttl,
                    0,
                    max_unpack,
                    redis_id,
                    message.encode(),
                ]
                dispatch(keys=[broker.namespace], args=args, client=pipe)
            pipe.execute()

    def ping(self) -> None:
        if isinstance(self.broker, RedisBroker):
            self.broker.client.ping()

    def close(self) -> None:
        self.broker.close()
