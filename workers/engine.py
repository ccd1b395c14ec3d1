"""Carrying out accepted operations, one key at a time, in acceptance order.

Every operation message names one operation. Whoever gets a message *drains*
the key: in one write transaction (the key row locked) it applies every pending
operation of the key in ``seq`` order. Commands therefore take effect in the
order they were accepted however many threads run, and a redelivered message
finds its operation finished and does nothing (idempotence).

Creations of asymmetric keys generate their material outside the transaction
(it can take seconds); they claim the operation first, with a lease, so one
worker generates, and a dead worker's claim expires.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import dramatiq
from sqlmodel import Session

from kms import logs
from kms.clock import as_utc, rfc3339
from kms.commands import (
    BULK_CREATE_LIMIT,
    DEFAULT_PENDING_WINDOW_DAYS,
    OperationStatus,
    TimerKind,
    needs_keygen,
    route_for,
)
from kms.crypto.envelope import material_context
from kms.crypto.keygen import generate_material
from kms.errors import InternalError, KmsError, NotFound
from kms.lifecycle import Command, KeyState, MaterialState, created_state, plan
from kms.specs import KeySpec, Origin
from models import repo
from models.tables import Key, Operation
from workers import metrics
from workers.runtime import Runtime, runtime

logger = logging.getLogger("kms.workers")

#: A message that finds its key busy (an earlier command still running elsewhere)
#: comes back after this long.
BUSY_RETRY_MS = 300


@dataclass
class DrainResult:
    #: (timer id, due at) of timers armed in the transaction, to send once it committed.
    timers: list[tuple[int, datetime]] = field(default_factory=list)
    blocked: bool = False


# --- entry points (called by actors) ------------------------------------------------


def _age(op: Operation, now: datetime) -> float:
    return (now - as_utc(op.created_at)).total_seconds()


def _in_context(op: Operation) -> None:
    """Log lines of this thread now name the operation and the request that made it."""
    logs.operation_id.set(op.id)
    logs.request_id.set(op.request_id)


def run_operation(op_id: str) -> None:
    rt = runtime()
    with rt.db.read() as s:
        op = repo.find_operation(s, op_id)
    if op is None or OperationStatus(op.status).is_final or op.key_id is None:
        return
    _in_context(op)
    prepared: dict[str, Any] = {}
    if _needs_preparation(op):
        try:
            value = _prepare_claimed(rt, op)
        except KmsError as exc:
            _fail_prepared(rt, op, exc)
            return
        if value is None:
            return  # finished already, or another worker holds the claim
        prepared[op.id] = value
    result = drain(rt, op.key_id, prepared)
    send_timers(rt, result.timers)
    if result.blocked:
        with rt.db.read() as s:
            again = repo.find_operation(s, op_id)
        if again is not None and not OperationStatus(again.status).is_final:
            resend(op, delay_ms=BUSY_RETRY_MS)


def drain(rt: Runtime, key_id: str, prepared: dict[str, Any] | None = None) -> DrainResult:
    """Apply the key's pending operations in order, in one transaction."""
    now = rt.clock.now()
    out = DrainResult()
    with rt.db.write() as s:
        key = repo.find_key(s, key_id, for_update=True)
        for op in repo.pending_operations(s, key_id):
            if not _runnable(op, now, prepared or {}):
                out.blocked = True
                break
            key = _apply_one(rt, s, key, op, now, (prepared or {}).get(op.id), out)
    return out


def fail_after_retries(actor_name: str, args: tuple[Any, ...], error_name: str) -> None:
    """The message of an operation ran out of retries: the operation ends FAILED."""
    if actor_name == "fire_timer" or not args:
        return  # timers are re-sent by the scheduler's sweep
    rt = runtime()
    now = rt.clock.now()
    with rt.db.write() as s:
        op = repo.find_operation(s, str(args[0]))
        if op is None or OperationStatus(op.status).is_final:
            return
        message = (
            f"the {op.kind} operation failed after repeated attempts ({error_name}); "
            "operators can see it in the dead-letter queue; retry the command later"
        )
        _record_failure(s, op, InternalError(message), now)
        if op.kind == Command.CREATE_KEY and op.key_id:
            key = repo.find_key(s, op.key_id, for_update=True)
            if key is not None and key.state == KeyState.CREATING:
                repo.cas_update_key(s, key, now, state=KeyState.FAILED.value)
    logger.warning("operation %s failed after retries (%s)", op.id, error_name)


# --- sending ---------------------------------------------------------------------------


def resend(op: Operation, *, delay_ms: int | None = None) -> None:
    params = op.params or {}
    route = route_for(op.kind, params.get("key_spec"), params.get("origin"))
    dramatiq.get_broker().get_actor(route.actor_name).send_with_options(args=(op.id,), delay=delay_ms)


def send_timers(rt: Runtime, timers: list[tuple[int, datetime]]) -> None:
    if not timers:
        return
    actor = dramatiq.get_broker().get_actor("fire_timer")
    now = rt.clock.now()
    for timer_id, due_at in timers:
        actor.send_with_options(args=(timer_id,), delay=delay_until(now, due_at))


def delay_until(now: datetime, due_at: datetime) -> int | None:
    """Milliseconds from now to due_at, rounded up so a timer never fires early."""
    remaining = (as_utc(due_at) - now).total_seconds()
    return None if remaining <= 0 else math.ceil(remaining * 1000) + 20


# --- internals -----------------------------------------------------------------------


def _needs_preparation(op: Operation) -> bool:
    """Slow work (key generation, unwrapping an import) is done before the
    transaction, by the worker that claimed the operation."""
    params = op.params or {}
    if op.kind == Command.CREATE_KEY:
        return needs_keygen(op.kind, params.get("key_spec"), params.get("origin"))
    return Command(op.kind) in _PREPARERS


def _runnable(op: Operation, now: datetime, prepared: dict[str, Any]) -> bool:
    if _needs_preparation(op) and op.id not in prepared:
        return False  # the worker that claimed it prepares it
    if op.status == OperationStatus.RUNNING and op.id not in prepared:
        return op.lease_until is None or as_utc(op.lease_until) < now
    return True


def _prepare_claimed(rt: Runtime, op: Operation) -> Any:
    now = rt.clock.now()
    with rt.db.write() as s:
        if not repo.claim_operation(s, op, now, rt.settings.operation_lease_s):
            return None
    preparer = _PREPARERS.get(Command(op.kind), _generate)
    return preparer(rt, op)


def _generate(rt: Runtime, op: Operation) -> bytes:
    material = generate_material(KeySpec(op.params["key_spec"]))
    return rt.keyring.seal(material, material_context(op.key_id or "", 1))


def _fail_prepared(rt: Runtime, op: Operation, exc: KmsError) -> None:
    """Preparation refused the operation: it ends FAILED and nothing else changes."""
    now = rt.clock.now()
    with rt.db.write() as s:
        _record_failure(s, op, exc, now)
        repo.delete_import_payload(s, op.id)


def _record_failure(s: Session, op: Operation, exc: KmsError, now: datetime) -> None:
    """The operation ends FAILED with the error's code; metrics, audit and log say so."""
    repo.finish_operation(
        s,
        op.id,
        now,
        status=OperationStatus.FAILED,
        error_code=exc.code,
        error_message=exc.message,
        only_if_running=False,
    )
    metrics.operation_finished(op.kind, "FAILED", _age(op, now))
    repo.audit(
        s,
        now=now,
        project=op.project,
        action=op.kind,
        outcome=f"FAILED:{exc.code}",
        key_id=op.key_id,
        token_id=op.token_id,
        role=op.role,
        operation_id=op.id,
        request_id=op.request_id,
    )
    logger.info("operation %s %s failed: %s", op.id, op.kind, exc.code)


def _apply_one(
    rt: Runtime,
    s: Session,
    key: Key | None,
    op: Operation,
    now: datetime,
    prepared: Any,
    out: DrainResult,
) -> Key | None:
    command = Command(op.kind)
    try:
        if key is None:
            raise NotFound(f"key {op.key_id} no longer exists; it was deleted")
        handler = _HANDLERS[command]
        result = handler(rt, s, key, op, now, prepared, out)
    except KmsError as exc:
        _record_failure(s, op, exc, now)
        if command is Command.CREATE_KEY and key is not None:
            repo.cas_update_key(s, key, now, state=KeyState.FAILED.value)
        if command is Command.IMPORT_MATERIAL:
            repo.delete_import_payload(s, op.id)
        return repo.find_key(s, key.id) if key is not None else None
    repo.finish_operation(
        s, op.id, now, status=OperationStatus.SUCCEEDED, result=result, only_if_running=False
    )
    metrics.operation_finished(op.kind, "SUCCEEDED", _age(op, now))
    repo.audit(
        s,
        now=now,
        project=op.project,
        action=op.kind,
        outcome="SUCCEEDED",
        key_id=op.key_id,
        token_id=op.token_id,
        role=op.role,
        operation_id=op.id,
        request_id=op.request_id,
    )
    logger.info("operation %s %s succeeded", op.id, op.kind)
    return repo.find_key(s, key.id)


def _change(s: Session, key: Key, now: datetime, **values: Any) -> None:
    if not repo.cas_update_key(s, key, now, **values):
        # The key row is locked for this transaction, so this means a bug, not a race.
        raise RuntimeError("compare-and-set on a locked key failed")
    s.expire(key)


Handler = Callable[[Runtime, Session, Key, Operation, datetime, Any, DrainResult], dict[str, Any]]


def _create(
    rt: Runtime, s: Session, key: Key, op: Operation, now: datetime, sealed: Any, out: DrainResult
) -> dict[str, Any]:
    if key.state != KeyState.CREATING:
        return {"state": key.state}  # already created (redelivery after a crash)
    origin = Origin(key.origin)
    values: dict[str, Any] = {"state": created_state(origin).value}
    if origin is Origin.VNGCLOUD:
        if sealed is None:  # AES: generated inline, it takes microseconds
            sealed = rt.keyring.seal(generate_material(KeySpec(key.key_spec)), material_context(key.id, 1))
        repo.store_material(s, key.id, 1, sealed, now)
        values.update(material_state=MaterialState.ACTIVE.value, material_version=1)
    _change(s, key, now, **values)
    return {"state": values["state"]}


def _simple(
    rt: Runtime, s: Session, key: Key, op: Operation, now: datetime, prepared: Any, out: DrainResult
) -> dict[str, Any]:
    command = Command(op.kind)
    new_state = plan(command, repo.key_facts(key), key.id)
    values: dict[str, Any] = {"state": new_state.value}
    if command is Command.SCHEDULE_DELETION:
        days = int((op.params or {}).get("pending_window_days", DEFAULT_PENDING_WINDOW_DAYS))
        deletion_date = as_utc(op.created_at) + timedelta(seconds=days * rt.settings.day_s)
        values.update(deletion_date=deletion_date, pending_window_days=days)
        arm_timer(rt, s, TimerKind.DELETE_KEY, key.id, deletion_date, now, out)
    elif command is Command.CANCEL_DELETION:
        values.update(deletion_date=None, pending_window_days=None)
        repo.cancel_timer(s, TimerKind.DELETE_KEY, key.id)
    elif command is Command.DELETE_MATERIAL:
        repo.destroy_material(s, key.id)
        repo.cancel_timer(s, TimerKind.EXPIRE_MATERIAL, key.id)
        values.update(material_state=MaterialState.DELETED.value, material_expires_at=None)
    _change(s, key, now, **values)
    result: dict[str, Any] = {"state": new_state.value}
    if command is Command.SCHEDULE_DELETION:
        result["deletion_date"] = rfc3339(values["deletion_date"])
    return result


def arm_timer(
    rt: Runtime, s: Session, kind: TimerKind, subject: str, due_at: datetime, now: datetime, out: DrainResult
) -> None:
    timer = repo.set_timer(s, kind.value, subject, due_at)
    if due_at <= now + timedelta(seconds=rt.settings.timer_horizon_s):
        timer.sent_at = now  # sent right after commit; a lost send is re-sent by the sweep
        assert timer.id is not None
        out.timers.append((timer.id, due_at))


_HANDLERS: dict[Command, Handler] = {
    Command.CREATE_KEY: _create,
    Command.ENABLE: _simple,
    Command.DISABLE: _simple,
    Command.SCHEDULE_DELETION: _simple,
    Command.CANCEL_DELETION: _simple,
    Command.DELETE_MATERIAL: _simple,
}


Preparer = Callable[[Runtime, Operation], Any]
_PREPARERS: dict[Command, Preparer] = {}


def register(command: Command, handler: Handler, preparer: Preparer | None = None) -> None:
    """Actor families beyond the lifecycle (import) plug their steps in here."""
    _HANDLERS[command] = handler
    if preparer is not None:
        _PREPARERS[command] = preparer


# --- bulk creation -----------------------------------------------------------------------


#: Bulk passes one message may make before it leaves the rest to later messages.
MAX_BULK_PASSES = 20


def run_create(op_id: str) -> None:
    """Carry out fast creations in bulk, oldest first, until this one is done
    (group commit on the worker side). Web sends one such message per batch of
    creations, so each message makes at least one pass even if its own
    operation was already done by another."""
    rt = runtime()
    with rt.db.read() as s:
        op = repo.find_operation(s, op_id)
    if op is None or op.key_id is None:
        return
    _in_context(op)
    if _needs_preparation(op):
        run_operation(op_id)
        return
    for _ in range(MAX_BULK_PASSES):
        processed, trigger_done = create_in_bulk(rt, op)
        if trigger_done:
            return
        if processed == 0:  # not creatable in bulk (its key is busy or changed): the usual path
            run_operation(op_id)
            return


def create_in_bulk(rt: Runtime, trigger: Operation) -> tuple[int, bool]:
    """Create the keys of up to BULK_CREATE_LIMIT queued fast creations, the
    trigger among them if it is still queued. Returns (how many, trigger done)."""
    now = rt.clock.now()
    with rt.db.write() as s:
        ops = [
            op
            for op in repo.queued_creations(
                s, trigger.seq or 0, BULK_CREATE_LIMIT, skip_locked=not rt.db.is_sqlite
            )
            if not _needs_preparation(op)
        ]
        keys = repo.creating_keys(s, [op.key_id for op in ops if op.key_id], skip_locked=not rt.db.is_sqlite)
        done = [op for op in ops if op.key_id in keys]
        trigger_done = trigger.id in {op.id for op in done} or all(op.id != trigger.id for op in ops)
        materials, key_rows, op_rows, audits = [], [], [], []
        for op in done:
            key = keys[op.key_id or ""]
            origin = Origin(key.origin)
            state = created_state(origin)
            row: dict[str, Any] = {
                "id": key.id,
                "state": state.value,
                "version": key.version + 1,
                "updated_at": now,
            }
            if origin is Origin.VNGCLOUD:
                sealed = rt.keyring.seal(
                    generate_material(KeySpec(key.key_spec)), material_context(key.id, 1)
                )
                materials.append({"key_id": key.id, "version": 1, "sealed": sealed, "created_at": now})
                row.update(material_state=MaterialState.ACTIVE.value, material_version=1)
            key_rows.append(row)
            op_rows.append(
                {
                    "seq": op.seq,
                    "status": OperationStatus.SUCCEEDED.value,
                    "result": {"state": state.value},
                    "attempts": op.attempts + 1,
                    "started_at": now,
                    "finished_at": now,
                }
            )
            audits.append(
                {
                    "at": now,
                    "project": op.project,
                    "token_id": op.token_id,
                    "role": op.role,
                    "action": op.kind,
                    "key_id": op.key_id,
                    "outcome": "SUCCEEDED",
                    "request_id": op.request_id,
                    "operation_id": op.id,
                }
            )
        repo.apply_bulk_creation(s, materials=materials, keys=key_rows, operations=op_rows, audits=audits)
        for op in done:
            metrics.operation_finished(op.kind, "SUCCEEDED", _age(op, now))
    if done:
        logger.info("created %d keys in one transaction", len(done))
    return len(done), trigger_done
