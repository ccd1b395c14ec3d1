"""Repository functions: every read and compare-and-set write the service does.

Functions take an open session (``Database.write()``/``read()``) and the current
time from the caller's clock; none of them commits on its own.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, exists, func, insert, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from kms.clock import as_utc, rfc3339
from kms.commands import OperationStatus
from kms.errors import IdempotencyConflict, NotFound, ValidationError
from kms.lifecycle import KeyFacts, KeyState, MaterialState
from kms.specs import Manager, Origin
from models.tables import (
    ApiToken,
    AuditEvent,
    Batch,
    IdempotencyRecord,
    ImportPayload,
    Key,
    KeyMaterial,
    KeyTag,
    Operation,
    Project,
    Timer,
    WrappingKey,
)

ACTIVE_STATUSES = (OperationStatus.QUEUED.value, OperationStatus.RUNNING.value)


def new_id() -> str:
    return str(uuid.uuid4())


# --- projects and tokens ---------------------------------------------------------


#: Projects known to exist (they are never deleted): saves a read per accepted create.
_KNOWN_PROJECTS: set[tuple[str, str]] = set()


def ensure_project(s: Session, name: str, now: datetime) -> None:
    known = (str(s.get_bind().engine.url), name)
    if known in _KNOWN_PROJECTS:
        return
    if s.get(Project, name) is None:
        s.add(Project(name=name, created_at=now))
        s.flush()
    _KNOWN_PROJECTS.add(known)


def add_token(s: Session, *, project: str, role: str, token_hash: str, now: datetime) -> str:
    ensure_project(s, project, now)
    token_id = new_id()
    s.add(ApiToken(id=token_id, project=project, role=role, token_hash=token_hash, created_at=now))
    return token_id


@dataclass(frozen=True)
class Principal:
    token_id: str
    project: str
    role: str


def find_principal(s: Session, token_hash: str) -> Principal | None:
    row = s.exec(  # type: ignore[call-overload]
        select(ApiToken).where(col(ApiToken.token_hash) == token_hash, col(ApiToken.revoked_at).is_(None))
    ).first()
    if row is None:
        return None
    token = row[0]
    return Principal(token.id, token.project, token.role)


def project_has_tokens(s: Session, project: str) -> bool:
    return (
        s.execute(select(col(ApiToken.id)).where(col(ApiToken.project) == project).limit(1)).first()
        is not None
    )


# --- keys ------------------------------------------------------------------------


def key_facts(key: Key) -> KeyFacts:
    return KeyFacts(
        state=KeyState(key.state),
        origin=Origin(key.origin),
        manager=Manager(key.manager),
        material=MaterialState(key.material_state),
    )


def get_key(s: Session, project: str | None, key_id: str, *, for_update: bool = False) -> Key:
    """A key of ``project`` (any project when None); another project's key is NotFound."""
    stmt = select(Key).where(col(Key.id) == key_id)
    if project is not None:
        stmt = stmt.where(col(Key.project) == project)
    if for_update:
        stmt = stmt.with_for_update()
    row = s.execute(stmt).scalar_one_or_none()
    if row is None:
        raise NotFound(f"key {key_id} not found; check the key id (it may have been deleted)")
    return row


def find_key(s: Session, key_id: str, *, for_update: bool = False) -> Key | None:
    stmt = select(Key).where(col(Key.id) == key_id)
    if for_update:
        stmt = stmt.with_for_update()
    return s.execute(stmt).scalar_one_or_none()


def add_tags(s: Session, key_id: str, tags: dict[str, str]) -> None:
    for name, value in tags.items():
        s.add(KeyTag(key_id=key_id, name=name, value=value))


def set_tags(s: Session, key_id: str, tags: dict[str, str]) -> None:
    s.execute(delete(KeyTag).where(col(KeyTag.key_id) == key_id))
    add_tags(s, key_id, tags)


def encode_cursor(values: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(values, list) or len(values) != arity:
            raise ValueError
        return values
    except (ValueError, TypeError):
        raise ValidationError(
            "cursor is not valid; pass the next_cursor of a previous page unchanged"
        ) from None


def page(
    s: Session, stmt: Any, limit: int, cursor_of: Callable[[Any], list[Any]]
) -> tuple[list[Any], str | None]:
    """One keyset page: ``limit`` rows of the ordered ``stmt``, and the cursor of
    the next page (None on the last one)."""
    rows = list(s.execute(stmt.limit(limit + 1)).scalars())
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(cursor_of(rows[-1]))


def list_keys(
    s: Session,
    project: str,
    *,
    manager: str | None,
    state: str | None,
    q: str | None,
    tag: tuple[str, str] | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Key], str | None]:
    """Newest first, keyset-paginated on (created_at, id)."""
    stmt = select(Key).where(col(Key.project) == project)
    if manager:
        stmt = stmt.where(col(Key.manager) == manager)
    if state:
        stmt = stmt.where(col(Key.state) == state)
    if q:
        pattern = "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(
            or_(func.lower(Key.name).like(pattern, escape="\\"), col(Key.id).startswith(q.lower()))
        )
    if tag:
        stmt = stmt.where(
            exists().where(
                and_(
                    col(KeyTag.key_id) == col(Key.id),
                    col(KeyTag.name) == tag[0],
                    col(KeyTag.value) == tag[1],
                )
            )
        )
    if cursor:
        created, key_id = decode_cursor(cursor, 2)
        created_at = datetime.fromisoformat(created)
        stmt = stmt.where(tuple_(col(Key.created_at), col(Key.id)) < tuple_(created_at, key_id))
    stmt = stmt.order_by(col(Key.created_at).desc(), col(Key.id).desc())
    return page(s, stmt, limit, lambda last: [as_utc(last.created_at).isoformat(), last.id])


def cas_update_key(s: Session, key: Key, now: datetime, **values: Any) -> bool:
    """Apply ``values`` only if the key is still at the version and state we read."""
    result = s.execute(
        update(Key)
        .where(col(Key.id) == key.id, col(Key.version) == key.version, col(Key.state) == key.state)
        .values(version=key.version + 1, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def store_material(s: Session, key_id: str, version: int, sealed: bytes, now: datetime) -> None:
    s.add(KeyMaterial(key_id=key_id, version=version, sealed=sealed, created_at=now))


def load_material(s: Session, key_id: str, version: int) -> bytes | None:
    row = s.get(KeyMaterial, (key_id, version))
    return None if row is None else row.sealed


def destroy_material(s: Session, key_id: str) -> None:
    s.execute(delete(KeyMaterial).where(col(KeyMaterial.key_id) == key_id))


def delete_key_row(s: Session, key_id: str) -> None:
    destroy_material(s, key_id)
    s.execute(delete(KeyTag).where(col(KeyTag.key_id) == key_id))
    s.execute(delete(Timer).where(col(Timer.subject_id) == key_id))
    s.execute(delete(Key).where(col(Key.id) == key_id))


# --- operations ------------------------------------------------------------------


def pending_operations(s: Session, key_id: str) -> list[Operation]:
    """Accepted, unfinished commands on a key, in acceptance order."""
    stmt = (
        select(Operation)
        .where(col(Operation.key_id) == key_id, col(Operation.status).in_(ACTIVE_STATUSES))
        .order_by(col(Operation.seq))
    )
    return list(s.execute(stmt).scalars())


def get_operation(s: Session, project: str | None, op_id: str, token_id: str | None = None) -> Operation:
    """An operation of ``project``, or one submitted with ``token_id`` (a platform
    service polls what it submitted for another project)."""
    stmt = select(Operation).where(col(Operation.id) == op_id)
    if project is not None:
        mine = col(Operation.project) == project
        if token_id is not None:
            mine = or_(mine, col(Operation.token_id) == token_id)
        stmt = stmt.where(mine)
    row = s.execute(stmt).scalar_one_or_none()
    if row is None:
        raise NotFound(f"operation {op_id} not found; check the operation id")
    return row


def find_operation(s: Session, op_id: str) -> Operation | None:
    return s.execute(select(Operation).where(col(Operation.id) == op_id)).scalar_one_or_none()


def list_operations(
    s: Session,
    project: str,
    *,
    status: str | None,
    kind: str | None,
    key_id: str | None,
    batch_id: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Operation], str | None]:
    """Newest first, keyset-paginated on seq."""
    stmt = select(Operation).where(col(Operation.project) == project)
    for column, value in (
        (Operation.status, status),
        (Operation.kind, kind),
        (Operation.key_id, key_id),
        (Operation.batch_id, batch_id),
    ):
        if value:
            stmt = stmt.where(col(column) == value)
    if cursor:
        (seq,) = decode_cursor(cursor, 1)
        stmt = stmt.where(col(Operation.seq) < int(seq))
    return page(s, stmt.order_by(col(Operation.seq).desc()), limit, lambda last: [last.seq])


def claim_operation(s: Session, op: Operation, now: datetime, lease_s: float) -> bool:
    """QUEUED (or RUNNING with an expired lease) → RUNNING, for one worker only."""
    result = s.execute(
        update(Operation)
        .where(
            col(Operation.seq) == op.seq,
            or_(
                col(Operation.status) == OperationStatus.QUEUED.value,
                and_(
                    col(Operation.status) == OperationStatus.RUNNING.value, col(Operation.lease_until) < now
                ),
            ),
        )
        .values(
            status=OperationStatus.RUNNING.value,
            attempts=Operation.attempts + 1,  # type: ignore[operator]
            started_at=func.coalesce(Operation.started_at, now),
            lease_until=now + timedelta(seconds=lease_s),
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def finish_operation(
    s: Session,
    op_id: str,
    now: datetime,
    *,
    status: OperationStatus,
    result: dict[str, Any] | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
    only_if_running: bool = True,
) -> bool:
    stmt = update(Operation).where(col(Operation.id) == op_id)
    if only_if_running:
        stmt = stmt.where(col(Operation.status) == OperationStatus.RUNNING.value)
    else:
        stmt = stmt.where(col(Operation.status).in_(ACTIVE_STATUSES))
    res = s.execute(
        stmt.values(
            status=status.value,
            result=result,
            error_code=error_code,
            error_message=error_message,
            finished_at=now,
            lease_until=None,
            # an operation run straight from QUEUED was not claimed first: count its attempt here
            attempts=case(
                (col(Operation.status) == OperationStatus.QUEUED.value, Operation.attempts + 1),  # type: ignore[operator]
                else_=Operation.attempts,
            ),
        ).execution_options(synchronize_session=False)
    )
    return res.rowcount == 1  # type: ignore[attr-defined]


def release_operation(s: Session, op_id: str) -> None:
    """Give a RUNNING operation back to the queue after a transient fault."""
    s.execute(
        update(Operation)
        .where(col(Operation.id) == op_id, col(Operation.status) == OperationStatus.RUNNING.value)
        .values(status=OperationStatus.QUEUED.value, lease_until=None)
        .execution_options(synchronize_session=False)
    )


def mark_sent(s: Session, op_ids: Iterable[str], now: datetime) -> None:
    ids = list(op_ids)
    if ids:
        s.execute(
            update(Operation)
            .where(col(Operation.id).in_(ids))
            .values(sent_at=now)
            .execution_options(synchronize_session=False)
        )


def claim_stale_operations(
    s: Session, now: datetime, *, requeue_after_s: float, limit: int, skip_locked: bool
) -> list[Operation]:
    """Operations whose message was probably lost: QUEUED and sent long ago, or
    RUNNING past their lease (the worker died). Their ``sent_at`` is bumped so
    that several scheduler replicas do not all re-send them."""
    cutoff = now - timedelta(seconds=requeue_after_s)
    stmt = (
        select(Operation)
        .where(
            or_(
                and_(
                    col(Operation.status) == OperationStatus.QUEUED.value,
                    or_(col(Operation.sent_at).is_(None), col(Operation.sent_at) < cutoff),
                ),
                and_(
                    col(Operation.status) == OperationStatus.RUNNING.value,
                    col(Operation.lease_until) < now,
                    or_(col(Operation.sent_at).is_(None), col(Operation.sent_at) < cutoff),
                ),
            )
        )
        .order_by(col(Operation.seq))
        .limit(limit)
    )
    if skip_locked:
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list(s.execute(stmt).scalars())
    mark_sent(s, (r.id for r in rows), now)
    return rows


def remember_idempotency(
    s: Session, *, project: str, idempotency_key: str, request_hash: str, operation_id: str, now: datetime
) -> None:
    s.add(
        IdempotencyRecord(
            project=project,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            operation_id=operation_id,
            created_at=now,
        )
    )


def recall_idempotency(
    s: Session, *, project: str, idempotency_key: str, request_hash: str, now: datetime, ttl_s: float
) -> str | None:
    """The operation an earlier identical request created, if any, within ``ttl_s``."""
    row = s.get(IdempotencyRecord, (project, idempotency_key))
    if row is None or as_utc(row.created_at) < now - timedelta(seconds=ttl_s):
        return None
    if row.request_hash != request_hash:
        raise IdempotencyConflict(
            "this Idempotency-Key was already used with a different request; use a new key for a new request"
        )
    return row.operation_id


def forget_idempotency(s: Session, *, project: str, idempotency_key: str) -> None:
    s.execute(
        delete(IdempotencyRecord).where(
            col(IdempotencyRecord.project) == project,
            col(IdempotencyRecord.idempotency_key) == idempotency_key,
        )
    )


def is_unique_violation(exc: IntegrityError) -> bool:
    return "unique" in str(exc.orig).lower() or "duplicate" in str(exc.orig).lower()


# --- timers ----------------------------------------------------------------------


def set_timer(s: Session, kind: str, subject_id: str, due_at: datetime) -> Timer:
    """One pending timer per (kind, subject): (re)arm it for ``due_at``."""
    timer = s.execute(
        select(Timer).where(col(Timer.kind) == kind, col(Timer.subject_id) == subject_id)
    ).scalar_one_or_none()
    if timer is None:
        timer = Timer(kind=kind, subject_id=subject_id, due_at=due_at)
        s.add(timer)
    else:
        timer.due_at, timer.sent_at, timer.fired_at = due_at, None, None
    s.flush()
    return timer


def cancel_timer(s: Session, kind: str, subject_id: str) -> None:
    s.execute(delete(Timer).where(col(Timer.kind) == kind, col(Timer.subject_id) == subject_id))


def get_timer(s: Session, timer_id: int) -> Timer | None:
    return s.get(Timer, timer_id)


def mark_timer_sent(s: Session, timer_id: int, now: datetime) -> None:
    s.execute(
        update(Timer)
        .where(col(Timer.id) == timer_id)
        .values(sent_at=now)
        .execution_options(synchronize_session=False)
    )


def finish_timer(s: Session, timer_id: int) -> None:
    s.execute(delete(Timer).where(col(Timer.id) == timer_id))


def claim_due_timers(
    s: Session, now: datetime, *, horizon_s: float, grace_s: float, limit: int, skip_locked: bool
) -> list[Timer]:
    """Timers to send now: never sent and due within the horizon, or sent but
    overdue by more than ``grace_s`` (the delayed message was lost)."""
    horizon = now + timedelta(seconds=horizon_s)
    overdue = now - timedelta(seconds=grace_s)
    stmt = (
        select(Timer)
        .where(
            col(Timer.fired_at).is_(None),
            or_(
                and_(col(Timer.sent_at).is_(None), col(Timer.due_at) <= horizon),
                and_(col(Timer.due_at) < overdue, col(Timer.sent_at) < overdue),
            ),
        )
        .order_by(col(Timer.due_at))
        .limit(limit)
    )
    if skip_locked:
        stmt = stmt.with_for_update(skip_locked=True)
    timers = list(s.execute(stmt).scalars())
    for t in timers:
        t.sent_at = now
    s.flush()
    return timers


# --- audit -----------------------------------------------------------------------


def audit(
    s: Session,
    *,
    now: datetime,
    project: str,
    action: str,
    outcome: str,
    key_id: str | None = None,
    token_id: str | None = None,
    role: str | None = None,
    request_id: str | None = None,
    operation_id: str | None = None,
) -> None:
    s.add(
        AuditEvent(
            at=now,
            project=project,
            token_id=token_id,
            role=role,
            action=action,
            key_id=key_id,
            outcome=outcome,
            request_id=request_id,
            operation_id=operation_id,
        )
    )


def count_keys_by_state(s: Session) -> dict[str, int]:
    rows = s.execute(select(col(Key.state), func.count()).group_by(Key.state)).all()
    return {state: n for state, n in rows}


# --- serialisation -------------------------------------------------------------------


def key_to_dict(key: Key) -> dict[str, Any]:
    """The public view of a key (DESIGN §5 ``Key``): never any material."""
    return {
        "id": key.id,
        "name": key.name,
        "description": key.description,
        "tags": dict(key.tags or {}),
        "key_type": key.key_type,
        "key_spec": key.key_spec,
        "key_usage": key.key_usage,
        "origin": key.origin,
        "manager": key.manager,
        "service": key.service,
        "state": key.state,
        "created_at": rfc3339(key.created_at),
        "updated_at": rfc3339(key.updated_at),
        "deletion_date": rfc3339(key.deletion_date),
        "pending_window_days": key.pending_window_days,
        "material": {
            "state": key.material_state,
            "imported_at": rfc3339(key.material_imported_at),
            "expires_at": rfc3339(key.material_expires_at),
        },
    }


def operation_to_dict(op: Operation) -> dict[str, Any]:
    return {
        "id": op.id,
        "kind": op.kind,
        "key_id": op.key_id,
        "batch_id": op.batch_id,
        "status": op.status,
        "error": {"code": op.error_code, "message": op.error_message} if op.error_code else None,
        "result": op.result,
        "attempts": op.attempts,
        "created_at": rfc3339(op.created_at),
        "started_at": rfc3339(op.started_at),
        "finished_at": rfc3339(op.finished_at),
    }


# --- wrapping keys and import payloads ------------------------------------------------


def add_wrapping_key(
    s: Session, *, key_id: str, spec: str, sealed_private: bytes, public_pem: str, now: datetime
) -> WrappingKey:
    row = WrappingKey(
        id=key_id, spec=spec, sealed_private=sealed_private, public_pem=public_pem, created_at=now
    )
    s.add(row)
    return row


def claim_wrapping_key(
    s: Session, spec: str, *, key_id: str, now: datetime, expires_at: datetime, skip_locked: bool
) -> WrappingKey | None:
    """Take one pooled pair of ``spec`` and issue it to ``key_id`` (None: the pool is empty)."""
    stmt = (
        select(WrappingKey)
        .where(col(WrappingKey.spec) == spec, col(WrappingKey.issued_at).is_(None))
        .order_by(col(WrappingKey.created_at))
        .limit(1)
    )
    if skip_locked:
        stmt = stmt.with_for_update(skip_locked=True)
    row = s.execute(stmt).scalar_one_or_none()
    if row is None:
        return None
    row.issued_at, row.key_id, row.expires_at = now, key_id, expires_at
    s.flush()
    return row


def reserve_wrapping_keys(
    s: Session, spec: str, count: int, *, now: datetime, skip_locked: bool
) -> list[tuple[str, str]]:
    """Take up to ``count`` pooled pairs of ``spec`` for one web process to hand out:
    (id, public PEM). Reserved pairs have ``issued_at`` but no key or expiry yet
    (:func:`bind_wrapping_keys` records those)."""
    stmt = (
        select(col(WrappingKey.id), col(WrappingKey.public_pem))
        .where(col(WrappingKey.spec) == spec, col(WrappingKey.issued_at).is_(None))
        .order_by(col(WrappingKey.created_at))
        .limit(count)
    )
    if skip_locked:
        stmt = stmt.with_for_update(skip_locked=True)
    rows = [(str(i), str(pem)) for i, pem in s.execute(stmt).all()]
    if rows:
        s.execute(
            update(WrappingKey)
            .where(col(WrappingKey.id).in_([i for i, _ in rows]))
            .values(issued_at=now)
            .execution_options(synchronize_session=False)
        )
    return rows


def bind_wrapping_keys(s: Session, bindings: list[dict[str, Any]]) -> None:
    """[{id, key_id, expires_at}]: which key each handed-out pair went to, until when."""
    if bindings:
        s.execute(update(WrappingKey), bindings)


def pool_size(s: Session, spec: str) -> int:
    stmt = select(func.count()).where(col(WrappingKey.spec) == spec, col(WrappingKey.issued_at).is_(None))
    return int(s.execute(stmt).scalar_one())


def pool_in_use(s: Session, spec: str) -> bool:
    """Whether any pair of ``spec`` was ever issued (pools fill only for specs in use)."""
    stmt = select(col(WrappingKey.id)).where(
        col(WrappingKey.spec) == spec, col(WrappingKey.issued_at).is_not(None)
    )
    return s.execute(stmt.limit(1)).first() is not None


def get_wrapping_key(s: Session, wrapping_key_id: str) -> WrappingKey | None:
    return s.get(WrappingKey, wrapping_key_id)


def destroy_expired_wrapping_keys(
    s: Session, now: datetime, *, unbound_before: datetime | None = None
) -> int:
    """Destroy pairs past their validity, and reserved pairs never bound to a key
    before ``unbound_before`` (their web process stopped before it recorded them)."""
    expired = col(WrappingKey.expires_at) < now
    if unbound_before is not None:
        expired = or_(
            expired,
            and_(col(WrappingKey.expires_at).is_(None), col(WrappingKey.issued_at) < unbound_before),
        )
    result = s.execute(delete(WrappingKey).where(expired).execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]


def add_import_payload(
    s: Session,
    *,
    operation_id: str,
    key_id: str,
    wrapping_key_id: str,
    algorithm: str,
    sealed_blob: bytes,
    now: datetime,
) -> None:
    s.add(
        ImportPayload(
            operation_id=operation_id,
            key_id=key_id,
            wrapping_key_id=wrapping_key_id,
            algorithm=algorithm,
            sealed_blob=sealed_blob,
            created_at=now,
        )
    )


def get_import_payload(s: Session, operation_id: str) -> ImportPayload | None:
    return s.get(ImportPayload, operation_id)


def delete_import_payload(s: Session, operation_id: str) -> None:
    s.execute(delete(ImportPayload).where(col(ImportPayload.operation_id) == operation_id))


def replace_material(s: Session, key_id: str, version: int, sealed: bytes, now: datetime) -> None:
    s.execute(
        delete(KeyMaterial).where(col(KeyMaterial.key_id) == key_id, col(KeyMaterial.version) == version)
    )
    store_material(s, key_id, version, sealed, now)


# --- bulk creation ---------------------------------------------------------------------


def queued_creations(s: Session, include_seq: int, limit: int, *, skip_locked: bool) -> list[Operation]:
    """The oldest queued fast creations (queue ``create``) of every project, shared
    fairly between projects (one project's huge batch does not make another's single
    create wait), and the one with ``include_seq``."""
    projects = projects_with_queued_creations(s)
    share = max(1, limit // max(1, len(projects)))
    rows: list[Operation] = []
    for project in projects:
        stmt = (
            select(Operation)
            .where(
                col(Operation.queue) == "create",
                col(Operation.status) == OperationStatus.QUEUED.value,
                col(Operation.project) == project,
            )
            .order_by(col(Operation.seq))
            .limit(share)
        )
        if skip_locked:
            stmt = stmt.with_for_update(skip_locked=True)
        rows += list(s.execute(stmt).scalars())
    if include_seq and all(op.seq != include_seq for op in rows):
        extra = select(Operation).where(
            col(Operation.seq) == include_seq, col(Operation.status) == OperationStatus.QUEUED.value
        )
        if skip_locked:
            extra = extra.with_for_update(skip_locked=True)
        rows += list(s.execute(extra).scalars())
    return rows


def creating_keys(s: Session, key_ids: list[str], *, skip_locked: bool) -> dict[str, Key]:
    if not key_ids:
        return {}
    stmt = select(Key).where(col(Key.id).in_(key_ids), col(Key.state) == "CREATING")
    if skip_locked:
        stmt = stmt.with_for_update(skip_locked=True)
    return {k.id: k for k in s.execute(stmt).scalars()}


def apply_bulk_creation(
    s: Session,
    *,
    materials: list[dict[str, Any]],
    keys: list[dict[str, Any]],
    operations: list[dict[str, Any]],
    audits: list[dict[str, Any]],
) -> None:
    """Executemany inserts and primary-key updates: one round trip per table."""
    if materials:
        s.execute(insert(KeyMaterial), materials)
    if keys:
        s.execute(update(Key), keys)
    if operations:
        s.execute(update(Operation), operations)
    if audits:
        s.execute(insert(AuditEvent), audits)


# --- batches ----------------------------------------------------------------------------


def get_batch(s: Session, project: str, batch_id: str) -> Batch:
    row = s.execute(
        select(Batch).where(col(Batch.id) == batch_id, col(Batch.project) == project)
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"batch {batch_id} not found; check the batch id")
    return row


def batch_progress(s: Session, batch_id: str) -> tuple[dict[str, int], datetime | None]:
    """Operation counts by status (index on batch_id) and the last finish time."""
    rows = s.execute(
        select(col(Operation.status), func.count(), func.max(col(Operation.finished_at)))
        .where(col(Operation.batch_id) == batch_id)
        .group_by(col(Operation.status))
    ).all()
    counts = {status.value: 0 for status in OperationStatus}
    last: datetime | None = None
    for status, n, finished in rows:
        counts[status] = int(n)
        if finished is not None and (last is None or as_utc(finished) > as_utc(last)):
            last = finished
    return counts, last


def list_batches(
    s: Session, project: str, *, limit: int, cursor: str | None
) -> tuple[list[Batch], str | None]:
    stmt = select(Batch).where(col(Batch.project) == project)
    if cursor:
        (seq,) = decode_cursor(cursor, 1)
        stmt = stmt.where(col(Batch.seq) < int(seq))
    return page(s, stmt.order_by(col(Batch.seq).desc()), limit, lambda last: [last.seq])


def count_keys(s: Session, project: str) -> int:
    return int(s.execute(select(func.count()).where(col(Key.project) == project)).scalar_one())


def count_in_flight(s: Session, project: str) -> int:
    stmt = select(func.count()).where(
        col(Operation.project) == project, col(Operation.status).in_(ACTIVE_STATUSES)
    )
    return int(s.execute(stmt).scalar_one())


def projects_with_queued_creations(s: Session) -> list[str]:
    stmt = (
        select(col(Operation.project))
        .where(col(Operation.queue) == "create", col(Operation.status) == OperationStatus.QUEUED.value)
        .distinct()
    )
    return [p for (p,) in s.execute(stmt).all()]


# --- bulk inserts (group commit) ----------------------------------------------------------


class RowView:
    """Attribute access to a row queued for a bulk insert (reads and writes go to the row)."""

    def __init__(self, row: dict[str, Any]) -> None:
        object.__setattr__(self, "_row", row)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._row[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self._row[name] = value


_BULK_ORDER = (Key, KeyTag, Operation)


def bulk_add(s: Session, model: type, row: dict[str, Any]) -> RowView:
    """Queue a row for one executemany insert per table at :func:`flush_bulk`
    (far cheaper than ORM objects when a transaction accepts a thousand commands)."""
    s.info.setdefault("bulk", {}).setdefault(model, []).append(row)
    return RowView(row)


def flush_bulk(s: Session) -> None:
    pending: dict[type, list[dict[str, Any]]] = s.info.pop("bulk", {})
    for model in _BULK_ORDER:
        rows = pending.get(model)
        if rows:
            s.execute(insert(model), rows)


def new_key_row(**values: Any) -> dict[str, Any]:
    """Every column of a new key (a bulk insert needs the same keys in every row)."""
    row: dict[str, Any] = {
        "description": "",
        "tags": {},
        "service": None,
        "version": 1,
        "deletion_date": None,
        "pending_window_days": None,
        "material_state": "NONE",
        "material_version": 0,
        "material_imported_at": None,
        "material_expires_at": None,
        "material_fingerprint": None,
    }
    row.update(values)
    return row


def new_operation_row(**values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "batch_id": None,
        "status": OperationStatus.QUEUED.value,
        "result": None,
        "error_code": None,
        "error_message": None,
        "attempts": 0,
        "request_id": None,
        "token_id": None,
        "started_at": None,
        "finished_at": None,
        "lease_until": None,
    }
    row.update(values)
    return row


# --- ops views ---------------------------------------------------------------------------


def waiting_by_queue(s: Session) -> dict[str, tuple[int, datetime | None]]:
    """QUEUED operations per queue and the oldest one's acceptance time (index on queue, status)."""
    rows = s.execute(
        select(col(Operation.queue), func.count(), func.min(col(Operation.created_at)))
        .where(col(Operation.status) == OperationStatus.QUEUED.value)
        .group_by(col(Operation.queue))
    ).all()
    return {queue: (int(n), oldest) for queue, n, oldest in rows}


def timer_stats(s: Session) -> tuple[dict[str, int], datetime | None]:
    rows = s.execute(
        select(col(Timer.kind), func.count(), func.min(col(Timer.due_at)))
        .where(col(Timer.fired_at).is_(None))
        .group_by(col(Timer.kind))
    ).all()
    counts = {kind: int(n) for kind, n, _ in rows}
    dues = [as_utc(due) for _, _, due in rows if due is not None]
    return counts, min(dues) if dues else None


def requeue_operation(s: Session, op_id: str, now: datetime) -> Operation | None:
    """A dead-lettered operation goes back to QUEUED (a failed creation's key back to CREATING)."""
    op = find_operation(s, op_id)
    if op is None:
        return None
    s.execute(
        update(Operation)
        .where(col(Operation.id) == op_id)
        .values(
            status=OperationStatus.QUEUED.value,
            error_code=None,
            error_message=None,
            finished_at=None,
            lease_until=None,
            sent_at=now,
            result=None,
        )
        .execution_options(synchronize_session=False)
    )
    if op.kind == "create_key" and op.key_id:
        key = find_key(s, op.key_id, for_update=True)
        if key is not None and key.state == "FAILED":
            cas_update_key(s, key, now, state="CREATING")
    s.expire(op)
    return find_operation(s, op_id)


def recent_unfinished_batches(s: Session, limit: int) -> list[Batch]:
    """Batches of every project that still have work (newest first)."""
    active = exists().where(
        and_(col(Operation.batch_id) == col(Batch.id), col(Operation.status).in_(ACTIVE_STATUSES))
    )
    stmt = select(Batch).where(active).order_by(col(Batch.seq).desc()).limit(limit)
    return list(s.execute(stmt).scalars())


def set_failure_reason(s: Session, op_id: str, message: str) -> None:
    s.execute(
        update(Operation)
        .where(col(Operation.id) == op_id)
        .values(error_message=message)
        .execution_options(synchronize_session=False)
    )


def add_audit_rows(s: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        s.execute(insert(AuditEvent), rows)


def list_audit(
    s: Session, project: str, *, key_id: str | None, action: str | None, limit: int, cursor: str | None
) -> tuple[list[AuditEvent], str | None]:
    """Newest first by the time of the event, keyset-paginated on (at, id)."""
    stmt = select(AuditEvent).where(col(AuditEvent.project) == project)
    if key_id:
        stmt = stmt.where(col(AuditEvent.key_id) == key_id)
    if action:
        stmt = stmt.where(col(AuditEvent.action) == action)
    if cursor:
        at, last = decode_cursor(cursor, 2)
        stmt = stmt.where(
            tuple_(col(AuditEvent.at), col(AuditEvent.id)) < tuple_(datetime.fromisoformat(at), int(last))
        )
    stmt = stmt.order_by(col(AuditEvent.at).desc(), col(AuditEvent.id).desc())
    return page(s, stmt, limit, lambda last: [as_utc(last.at).isoformat(), last.id])


def audit_to_dict(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": rfc3339(event.at),
        "project": event.project,
        "token_id": event.token_id,
        "role": event.role,
        "action": event.action,
        "key_id": event.key_id,
        "outcome": event.outcome,
        "request_id": event.request_id,
        "operation_id": event.operation_id,
    }


#: The columns the use of a key needs, read with one light Core query per use.
USE_COLUMNS = (
    Key.__table__.c.state,  # type: ignore[attr-defined]
    Key.__table__.c.version,  # type: ignore[attr-defined]
    Key.__table__.c.key_spec,  # type: ignore[attr-defined]
    Key.__table__.c.key_usage,  # type: ignore[attr-defined]
    Key.__table__.c.material_state,  # type: ignore[attr-defined]
    Key.__table__.c.material_version,  # type: ignore[attr-defined]
)
_USE_QUERY = select(*USE_COLUMNS).where(
    Key.__table__.c.id == bindparam("key_id"),  # type: ignore[attr-defined]
    Key.__table__.c.project == bindparam("project"),  # type: ignore[attr-defined]
)


def key_use_row(connection: Any, project: str, key_id: str) -> Any:
    """(state, version, spec, usage, material state, material version) or None — no ORM."""
    return connection.execute(_USE_QUERY, {"key_id": key_id, "project": project}).first()


_FACTS_QUERY = select(
    Key.__table__.c.state,  # type: ignore[attr-defined]
    Key.__table__.c.origin,  # type: ignore[attr-defined]
    Key.__table__.c.manager,  # type: ignore[attr-defined]
    Key.__table__.c.material_state,  # type: ignore[attr-defined]
    exists()
    .where(
        Operation.__table__.c.key_id == Key.__table__.c.id,  # type: ignore[attr-defined]
        Operation.__table__.c.status.in_(ACTIVE_STATUSES),  # type: ignore[attr-defined]
    )
    .label("pending"),
).where(
    Key.__table__.c.id == bindparam("key_id"),  # type: ignore[attr-defined]
    Key.__table__.c.project == bindparam("project"),  # type: ignore[attr-defined]
)


def key_facts_light(connection: Any, project: str, key_id: str) -> tuple[KeyFacts, bool] | None:
    """The key's lifecycle facts and whether commands are pending on it — one Core query."""
    row = connection.execute(_FACTS_QUERY, {"key_id": key_id, "project": project}).first()
    if row is None:
        return None
    state, origin, manager, material, pending = row
    facts = KeyFacts(KeyState(state), Origin(origin), Manager(manager), MaterialState(material))
    return facts, bool(pending)
