"""Accepting commands: validate what can be validated at once, commit the
operation row, enqueue its message, answer 202 (DESIGN §2).

Refusals knowable at acceptance come back as 4xx: the key's state is projected
through the commands already queued on it (kms.lifecycle), so a disable queued
behind a create is judged against the state the create will leave.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from kms.clock import rfc3339
from kms.commands import CREATIONS_PER_MESSAGE, ROUTE_CREATE, OperationStatus, Route, route_for
from kms.errors import KmsError, NotFound
from kms.lifecycle import Command, KeyFacts, KeyState, MaterialState, created_state, plan
from kms.specs import Origin
from models import repo
from models.tables import Batch, Key, Operation
from web.context import Services

IDEMPOTENCY_TTL_S = 24 * 3600.0


@dataclass(frozen=True)
class Caller:
    project: str
    token_id: str
    role: str
    request_id: str


@dataclass(frozen=True)
class Accepted:
    operation: dict[str, Any]
    key: dict[str, Any] | None


def projected_facts(key: Key, pending: list[Operation]) -> KeyFacts:
    """The key as it will be once the already-accepted commands have run."""
    facts = repo.key_facts(key)
    for op in pending:
        command = Command(op.kind)
        if command is Command.CREATE_KEY:
            origin = Origin(key.origin)
            material = MaterialState.ACTIVE if origin is Origin.VNGCLOUD else MaterialState.NONE
            facts = replace(facts, state=created_state(origin), material=material)
            continue
        try:
            facts = replace(facts, state=plan(command, facts, key.id))
        except KmsError:
            continue  # it will fail and change nothing
        if command is Command.IMPORT_MATERIAL:
            facts = replace(facts, material=MaterialState.ACTIVE)
        elif command is Command.DELETE_MATERIAL:
            facts = replace(facts, material=MaterialState.DELETED)
    return facts


def new_operation(
    caller: Caller,
    kind: Command,
    key_id: str,
    params: dict[str, Any],
    now: datetime,
    batch_id: str | None = None,
) -> Operation:
    return Operation(
        id=repo.new_id(),
        project=caller.project,
        kind=kind.value,
        queue=route_for(kind, params.get("key_spec"), params.get("origin")).queue.value,
        key_id=key_id,
        batch_id=batch_id,
        status=OperationStatus.QUEUED.value,
        params=params,
        request_id=caller.request_id,
        token_id=caller.token_id,
        role=caller.role,
        created_at=now,
        sent_at=now,
    )


def check_command(s: Session, caller: Caller, key_id: str, command: Command, *, lock: bool = True) -> Key:
    """Load the key (NotFound for another project's) and refuse at once what the
    lifecycle table refuses against its projected state."""
    key = repo.get_key(s, caller.project, key_id, for_update=lock)
    plan(command, projected_facts(key, repo.pending_operations(s, key_id)), key_id)
    return key


#: Adds an operation (and any rows) and returns it with its key. A writer raises
#: before it adds anything, so a refusal leaves the shared transaction clean.
def check_command_quickly(svc: Services, caller: Caller, key_id: str, command: Command) -> None:
    """:func:`check_command` for a read-only path: one light query when no command is
    pending on the key (the usual case), the full projection otherwise."""
    with svc.db.connect() as connection:
        found = repo.key_facts_light(connection, caller.project, key_id)
    if found is None:
        raise NotFound(f"key {key_id} not found; check the key id (it may have been deleted)")
    facts, pending = found
    if not pending:
        plan(command, facts, key_id)
        return
    with svc.db.read() as s:
        check_command(s, caller, key_id, command, lock=False)


Writer = Callable[[Session, datetime], tuple[Operation, Key | None]]


@dataclass(frozen=True)
class Submission:
    caller: Caller
    write: Writer
    idempotency_key: str | None = None
    request_hash: str = ""


def accept(svc: Services, submission: Submission) -> Accepted:
    """Accept one submission (blocking; see :func:`accept_many`)."""
    result = accept_many(svc, [submission])[0]
    if isinstance(result, KmsError):
        raise result
    return result


def accept_many(svc: Services, submissions: list[Submission]) -> list[Accepted | KmsError]:
    """Accept submissions in one transaction (group commit), honouring
    ``Idempotency-Key``, then enqueue their messages. Each refusal is returned in
    its place and changes nothing. Blocking: call via ``svc.run``."""
    now = svc.clock.now()
    sent: list[Operation] = []
    try:
        with svc.db.write() as s:
            results = [_accept_in(s, sub, now, sent) for sub in submissions]
            repo.flush_bulk(s)
    except IntegrityError as exc:
        if len(submissions) > 1:  # find the culprit: one transaction each
            return [accept_many(svc, [sub])[0] for sub in submissions]
        sub = submissions[0]
        if sub.idempotency_key and repo.is_unique_violation(exc):
            # A concurrent twin won the race: answer with its operation.
            with svc.db.read() as s:
                earlier = _recall(s, sub, now)
                if earlier is not None:
                    return [_describe(s, repo.get_operation(s, sub.caller.project, earlier))]
        raise
    svc.queue.send_many(messages_for(sent))
    return results


def messages_for(ops: list[Operation]) -> list[tuple[Route, tuple[str]]]:
    messages: list[tuple[Route, tuple[str]]] = []
    fast_creations = 0
    for op in ops:
        params = op.params or {}
        route = route_for(op.kind, params.get("key_spec"), params.get("origin"))
        if route == ROUTE_CREATE:
            fast_creations += 1
            if (fast_creations - 1) % CREATIONS_PER_MESSAGE:
                continue
        messages.append((route, (op.id,)))
    return messages


def _recall(s: Session, sub: Submission, now: datetime) -> str | None:
    assert sub.idempotency_key
    return repo.recall_idempotency(
        s,
        project=sub.caller.project,
        idempotency_key=sub.idempotency_key,
        request_hash=sub.request_hash,
        now=now,
        ttl_s=IDEMPOTENCY_TTL_S,
    )


def _accept_in(s: Session, sub: Submission, now: datetime, sent: list[Operation]) -> Accepted | KmsError:
    try:
        if sub.idempotency_key:
            repo.flush_bulk(s)  # an identical twin earlier in this transaction must be visible
            earlier = _recall(s, sub, now)
            if earlier is not None:
                return _describe(s, repo.get_operation(s, sub.caller.project, earlier))
            repo.forget_idempotency(s, project=sub.caller.project, idempotency_key=sub.idempotency_key)
        op, key = sub.write(s, now)
        if sub.idempotency_key:
            repo.remember_idempotency(
                s,
                project=sub.caller.project,
                idempotency_key=sub.idempotency_key,
                request_hash=sub.request_hash,
                operation_id=op.id,
                now=now,
            )
    except KmsError as exc:
        return exc
    sent.append(op)
    return Accepted(repo.operation_to_dict(op), repo.key_to_dict(key) if key is not None else None)


def _describe(s: Session, op: Operation) -> Accepted:
    key = repo.find_key(s, op.key_id) if op.key_id else None
    return Accepted(repo.operation_to_dict(op), repo.key_to_dict(key) if key else None)


def describe_operation(
    svc: Services, project: str, op_id: str, *, only_final: bool = False, token_id: str | None = None
) -> Accepted | None:
    with svc.db.read() as s:
        op = repo.get_operation(s, project, op_id, token_id)
        if only_final and not OperationStatus(op.status).is_final:
            return None
        return _describe(s, op)


__all__ = [
    "Accepted",
    "Caller",
    "KeyState",
    "Submission",
    "accept",
    "accept_many",
    "check_command",
    "describe_operation",
    "new_operation",
]


BATCH_GATE = threading.Lock()


@dataclass(frozen=True)
class BatchItem:
    """One item of a batch: its writer, or the error that refused it already."""

    index: int
    writer: Writer | None = None
    error: KmsError | None = None


def _batch_item(index: int, op: Operation | None, error: KmsError | None) -> dict[str, Any]:
    return {
        "index": index,
        "operation_id": op.id if op else None,
        "key_id": op.key_id if op else None,
        "error": {"code": error.code, "message": error.message} if error else None,
    }


def accept_batch(
    svc: Services, caller: Caller, items: list[BatchItem], *, idempotency_key: str | None, request_hash: str
) -> dict[str, Any]:
    """Accept a batch: one transaction for all its rows (group commit), one
    pipelined round of enqueues. Refused items are reported one by one and
    change nothing. Blocking: call via ``svc.run``."""
    now = svc.clock.now()
    batch_id = repo.new_id()
    idem = f"batch:{idempotency_key}" if idempotency_key else None
    sent: list[Operation] = []
    answers: list[dict[str, Any]] = []
    # One batch at a time per process reaches for the database lock, so single
    # commands (another project's, say) wait behind one batch at most, not ten.
    with BATCH_GATE, svc.db.write() as s:
        if idem:
            earlier = repo.recall_idempotency(
                s,
                project=caller.project,
                idempotency_key=idem,
                request_hash=request_hash,
                now=now,
                ttl_s=IDEMPOTENCY_TTL_S,
            )
            if earlier is not None:
                return describe_batch(s, repo.get_batch(s, caller.project, earlier), with_items=True)
            repo.forget_idempotency(s, project=caller.project, idempotency_key=idem)
        for item in items:
            op: Operation | None = None
            error = item.error
            if item.writer is not None:
                try:
                    op, _ = item.writer(s, now)
                    op.batch_id = batch_id
                    sent.append(op)
                except KmsError as exc:
                    error = exc
            answers.append(_batch_item(item.index, op, error))
        repo.flush_bulk(s)
        batch = Batch(
            id=batch_id,
            project=caller.project,
            total=len(items),
            accepted=len(sent),
            rejected=len(items) - len(sent),
            items=answers,
            created_at=now,
            finished_at=now if not sent else None,
        )
        s.add(batch)
        if idem:
            repo.remember_idempotency(
                s,
                project=caller.project,
                idempotency_key=idem,
                request_hash=request_hash,
                operation_id=batch_id,
                now=now,
            )
    svc.queue.send_many(messages_for(sent))
    return {**_batch_summary(batch), "items": answers}


def _batch_summary(batch: Batch) -> dict[str, Any]:
    return {
        "id": batch.id,
        "total": batch.total,
        "accepted": batch.accepted,
        "rejected": batch.rejected,
        "created_at": rfc3339(batch.created_at),
    }


def describe_batch(s: Session, batch: Batch, *, with_items: bool = False) -> dict[str, Any]:
    """The batch with its progress: counts by status, done, finished_at."""
    counts, last = repo.batch_progress(s, batch.id)
    done = counts["QUEUED"] == 0 and counts["RUNNING"] == 0
    answer = {
        **_batch_summary(batch),
        "counts": counts,
        "done": done,
        "finished_at": rfc3339((batch.finished_at or last) if done else None),
    }
    if with_items:
        answer["items"] = batch.items
    return answer
