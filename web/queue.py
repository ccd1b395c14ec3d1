"""Enqueueing operation messages by actor name (web/ never imports workers/)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
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


def operation_id_of(message: dramatiq.Message[Any]) -> str | None:
    """The operation a message carries out (timer and pool messages carry none)."""
    if not message.args or message.actor_name in ("fire_timer", "refill_wrapping_keys"):
        return None
    return str(message.args[0])


@dataclass
class DeadLetter:
    message_id: str
    queue: str
    actor: str
    operation_id: str | None
    attempts: int
    failed_at_ms: int


class QueueInspector:
    """Read-only views of the broker's queues, and the dead-letter moves ops ask for.

    Redis layout (Dramatiq's RedisBroker): ``{ns}:{q}`` ready list, ``{ns}:{q}.msgs``
    its messages, ``{ns}:{q}.DQ.msgs`` delayed messages, ``{ns}:{q}.XQ`` dead
    letters (sorted by failure time) with ``{ns}:{q}.XQ.msgs``, and
    ``{ns}:__heartbeats__`` the workers' last heartbeats.
    """

    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker

    def _redis(self) -> tuple[Any, str] | None:
        if isinstance(self.broker, RedisBroker):
            return self.broker.client, self.broker.namespace
        return None

    def counts(self, queues: Iterable[str]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        redis_ = self._redis()
        for q in queues:
            if redis_ is None:
                stub_queues = getattr(self.broker, "queues", {})
                dead = getattr(self.broker, "dead_letters_by_queue", {}).get(q, [])
                ready = stub_queues[q].qsize() if q in stub_queues else 0
                delayed = stub_queues[f"{q}.DQ"].qsize() if f"{q}.DQ" in stub_queues else 0
                out[q] = {"ready": ready, "delayed": delayed, "dead_lettered": len(dead)}
                continue
            client, ns = redis_
            with client.pipeline(transaction=False) as pipe:
                pipe.llen(f"{ns}:{q}")
                pipe.hlen(f"{ns}:{q}.DQ.msgs")
                pipe.zcard(f"{ns}:{q}.XQ")
                ready, delayed, dead = pipe.execute()
            out[q] = {"ready": int(ready), "delayed": int(delayed), "dead_lettered": int(dead)}
        return out

    def workers(self) -> list[tuple[str, int]]:
        """(broker id, last heartbeat in ms since the epoch) of workers seen recently."""
        redis_ = self._redis()
        if redis_ is None:
            return []
        client, ns = redis_
        rows = client.zrange(f"{ns}:__heartbeats__", 0, -1, withscores=True)
        return [
            (member.decode() if isinstance(member, bytes) else str(member), int(score))
            for member, score in rows
        ]

    def dead_letters(self, queue: str, offset: int, limit: int) -> list[DeadLetter]:
        redis_ = self._redis()
        if redis_ is None:
            proxies = getattr(self.broker, "dead_letters_by_queue", {}).get(queue, [])[
                offset : offset + limit
            ]
            return [self._letter(queue, p.message_id, p._message, 0) for p in proxies]
        client, ns = redis_
        rows = client.zrange(f"{ns}:{queue}.XQ", offset, offset + limit - 1, withscores=True)
        ids = [m.decode() if isinstance(m, bytes) else str(m) for m, _ in rows]
        data = client.hmget(f"{ns}:{queue}.XQ.msgs", ids) if ids else []
        letters = []
        for (redis_id, (_, score)), raw in zip(zip(ids, rows, strict=True), data, strict=True):
            if raw is None:
                continue
            letters.append(self._letter(queue, redis_id, dramatiq.Message.decode(raw), int(score)))
        return letters

    @staticmethod
    def _letter(queue: str, message_id: str, message: dramatiq.Message[Any], failed_at_ms: int) -> DeadLetter:
        operation_id = operation_id_of(message)
        return DeadLetter(
            message_id,
            queue,
            message.actor_name,
            operation_id,
            int(message.options.get("retries", 0)),
            failed_at_ms,
        )

    def take_dead_letter(self, queue: str, message_id: str) -> dramatiq.Message[Any] | None:
        """Remove one dead letter (atomically: only one caller gets it) and return its message."""
        redis_ = self._redis()
        if redis_ is None:
            letters = getattr(self.broker, "dead_letters_by_queue", {}).get(queue, [])
            for proxy in list(letters):
                if proxy.message_id == message_id:
                    letters.remove(proxy)
                    return proxy._message  # type: ignore[no-any-return]
            return None
        client, ns = redis_
        raw = client.hget(f"{ns}:{queue}.XQ.msgs", message_id)
        if raw is None or not client.zrem(f"{ns}:{queue}.XQ", message_id):
            return None
        client.hdel(f"{ns}:{queue}.XQ.msgs", message_id)
        return dramatiq.Message.decode(raw)

    def find_queue_of(self, message_id: str, queues: Iterable[str]) -> str | None:
        redis_ = self._redis()
        for q in queues:
            if redis_ is None:
                if any(
                    p.message_id == message_id
                    for p in getattr(self.broker, "dead_letters_by_queue", {}).get(q, [])
                ):
                    return q
            elif redis_[0].zscore(f"{redis_[1]}:{q}.XQ", message_id) is not None:
                return q
        return None
