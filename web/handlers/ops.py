"""Ops endpoints (role ``admin``): queues, workers, timers, dead letters, batches."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import dramatiq
from aiohttp import web
from sqlmodel import Session

from kms.clock import as_utc, rfc3339
from kms.commands import Queue
from kms.errors import NotFound, ValidationError
from models import repo
from models.repo import Principal
from models.tables import Operation
from web.auth import Role, require
from web.commands import describe_batch
from web.context import Services, services
from web.http import json_body, query_limit
from web.middleware import request_id
from web.queue import DeadLetter, QueueInspector, operation_id_of

QUEUES = [q.value for q in Queue]
#: Workers whose heartbeat is older than this are shown as not alive.
WORKER_ALIVE_S = 15.0


def inspector(svc: Services) -> QueueInspector:
    return QueueInspector(svc.queue.broker)


def queues_view(svc: Services) -> dict[str, Any]:
    """Blocking: a handful of indexed reads and one Redis pipeline per queue."""
    now = svc.clock.now()
    with svc.db.read() as s:
        waiting = repo.waiting_by_queue(s)
        timer_counts, next_deadline = repo.timer_stats(s)
    counts = inspector(svc).counts(QUEUES)
    queues = []
    for name in QUEUES:
        n_waiting, oldest = waiting.get(name, (0, None))
        messages = counts[name]
        queues.append(
            {
                "name": name,
                # work waiting: accepted operations not started (the database), or messages for
                # queues that carry no operations (timers, pool)
                "ready": max(n_waiting, messages["ready"]),
                "delayed": messages["delayed"],
                "dead_lettered": messages["dead_lettered"],
                "oldest_ready_age_s": round((now - as_utc(oldest)).total_seconds(), 3) if oldest else None,
                "messages": {"ready": messages["ready"], "delayed": messages["delayed"]},
            }
        )
    now_ms = time.time() * 1000
    workers = [
        {
            "id": worker_id,
            "last_heartbeat": rfc3339(datetime.fromtimestamp(beat / 1000, UTC)),
            "age_s": round((now_ms - beat) / 1000, 3),
            "alive": (now_ms - beat) / 1000 < WORKER_ALIVE_S,
        }
        for worker_id, beat in inspector(svc).workers()
    ]
    return {
        "queues": queues,
        "workers": workers,
        "timers": {
            "pending_deletions": timer_counts.get("delete_key", 0),
            "material_expiries": timer_counts.get("expire_material", 0),
            "next_deadline": rfc3339(next_deadline),
        },
    }


async def get_queues(request: web.Request) -> web.Response:
    await require(request, Role.ADMIN)
    svc = services(request)
    return web.json_response(await svc.run(queues_view, svc))


def _letter_view(svc: Services, letters: list[DeadLetter]) -> list[dict[str, Any]]:
    with svc.db.read() as s:
        ops = {op_id: repo.find_operation(s, op_id) for op_id in {lt.operation_id for lt in letters} if op_id}
    out = []
    for letter in letters:
        op = ops.get(letter.operation_id) if letter.operation_id else None
        out.append(
            {
                "message_id": letter.message_id,
                "queue": letter.queue,
                "actor": letter.actor,
                "operation_id": letter.operation_id,
                "key_id": op.key_id if op else None,
                "project": op.project if op else None,
                "error": {"code": op.error_code, "message": op.error_message}
                if op and op.error_code
                else None,
                "attempts": letter.attempts,
                "failed_at": rfc3339(datetime.fromtimestamp(letter.failed_at_ms / 1000, UTC))
                if letter.failed_at_ms
                else None,
            }
        )
    return out


async def list_dead_letters(request: web.Request) -> web.Response:
    await require(request, Role.ADMIN)
    svc = services(request)
    queue = request.query.get("queue")
    if queue is not None and queue not in QUEUES:
        raise ValidationError(f"queue must be one of: {', '.join(QUEUES)}")
    limit = query_limit(request, default=50, maximum=500)
    cursor = request.query.get("cursor")
    queue_index, offset = repo.decode_cursor(cursor, 2) if cursor else (0, 0)

    def load() -> dict[str, Any]:
        names = [queue] if queue else QUEUES
        letters: list[DeadLetter] = []
        qi, off = int(queue_index), int(offset)
        while qi < len(names) and len(letters) < limit:
            want = limit - len(letters)
            page = inspector(svc).dead_letters(names[qi], off, want)
            letters += page
            if len(page) < want:  # this queue has no more
                qi, off = qi + 1, 0
            else:
                off += len(page)
        next_cursor = repo.encode_cursor([qi, off]) if qi < len(names) else None
        return {"dead_letters": _letter_view(svc, letters), "next_cursor": next_cursor}

    return web.json_response(await svc.run(load))


def _audit(s: Session, op: Operation, action: str, principal: Principal, rid: str, now: datetime) -> None:
    repo.audit(
        s,
        now=now,
        project=op.project,
        action=action,
        outcome="SUCCEEDED",
        key_id=op.key_id,
        token_id=principal.token_id,
        role=principal.role,
        operation_id=op.id,
        request_id=rid,
    )


def _take(svc: Services, message_id: str) -> tuple[str, dramatiq.Message[Any]]:
    inspect = inspector(svc)
    queue = inspect.find_queue_of(message_id, QUEUES)
    message = inspect.take_dead_letter(queue, message_id) if queue else None
    if queue is None or message is None:
        raise NotFound(f"dead letter {message_id} not found; it may have been requeued or deleted already")
    return queue, message


async def requeue_dead_letter(request: web.Request) -> web.Response:
    principal = await require(request, Role.ADMIN)
    svc = services(request)
    message_id = request.match_info["message_id"]

    def requeue() -> dict[str, Any]:
        queue, message = _take(svc, message_id)
        op_id = operation_id_of(message)
        if op_id:
            now = svc.clock.now()
            with svc.db.write() as s:
                op = repo.requeue_operation(s, op_id, now)
                if op is not None:
                    _audit(s, op, "requeue_dead_letter", principal, request_id(request), now)
        svc.queue.broker.enqueue(
            dramatiq.Message(
                queue_name=queue,
                actor_name=message.actor_name,
                args=message.args,
                kwargs=message.kwargs,
                options={},
            )
        )
        return {"requeued": True, "message_id": message_id, "queue": queue, "operation_id": op_id}

    return web.json_response(await svc.run(requeue))


async def delete_dead_letter(request: web.Request) -> web.Response:
    principal = await require(request, Role.ADMIN)
    svc = services(request)
    message_id = request.match_info["message_id"]
    body = await json_body(request, optional=True)
    reason = body.get("reason") or "discarded by an operator"
    if not isinstance(reason, str) or len(reason) > 500:
        raise ValidationError("reason must be a string of at most 500 characters")

    rid = request_id(request)

    def discard() -> dict[str, Any]:
        queue, message = _take(svc, message_id)
        op_id = operation_id_of(message)
        if op_id:
            now = svc.clock.now()
            with svc.db.write() as s:
                op = repo.find_operation(s, op_id)
                if op is not None:
                    repo.finish_operation(
                        s,
                        op_id,
                        now,
                        status=repo.OperationStatus.FAILED,
                        error_code=op.error_code or "InternalError",
                        error_message=f"dead letter deleted: {reason}",
                        only_if_running=False,
                    )
                    if op.status == "FAILED":  # already failed after its retries: record the reason
                        repo.set_failure_reason(s, op_id, f"dead letter deleted: {reason}")
                    _audit(s, op, "delete_dead_letter", principal, rid, now)
        return {"deleted": True, "message_id": message_id, "queue": queue, "operation_id": op_id}

    return web.json_response(await svc.run(discard))


async def list_unfinished_batches(request: web.Request) -> web.Response:
    await require(request, Role.ADMIN)
    svc = services(request)
    limit = query_limit(request, default=20, maximum=100)

    def load() -> dict[str, Any]:
        with svc.db.read() as s:
            batches = repo.recent_unfinished_batches(s, limit)
            return {"batches": [{**describe_batch(s, b), "project": b.project} for b in batches]}

    return web.json_response(await svc.run(load))
