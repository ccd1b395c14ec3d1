"""SQLModel tables. Changes go through Alembic migrations (models/migrations)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Integer, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def _ts(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index))


class Project(SQLModel, table=True):
    __tablename__ = "projects"
    name: str = Field(primary_key=True, max_length=128)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class ApiToken(SQLModel, table=True):
    """A bearer token, stored as its SHA-256 only."""

    __tablename__ = "api_tokens"
    id: str = Field(primary_key=True, max_length=36)
    project: str = Field(index=True, max_length=128)
    role: str = Field(max_length=16)
    token_hash: str = Field(unique=True, max_length=64)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    revoked_at: datetime | None = _ts()


class Key(SQLModel, table=True):
    __tablename__ = "keys"
    __table_args__ = (
        Index("ix_keys_project_created", "project", "created_at", "id"),
        Index("ix_keys_state", "state"),
    )
    id: str = Field(primary_key=True, max_length=36)
    project: str = Field(max_length=128)
    name: str = Field(max_length=256)
    description: str = Field(default="", max_length=8192)
    tags: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    key_type: str = Field(max_length=16)
    key_spec: str = Field(max_length=16)
    key_usage: str = Field(max_length=16)
    origin: str = Field(max_length=16)
    manager: str = Field(max_length=16)
    service: str | None = Field(default=None, max_length=128)
    state: str = Field(max_length=20)
    #: Bumped by every change: the compare-and-set guard.
    version: int = Field(default=1)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    deletion_date: datetime | None = _ts()
    pending_window_days: int | None = None
    material_state: str = Field(default="NONE", max_length=16)
    material_version: int = Field(default=0)
    material_imported_at: datetime | None = _ts()
    material_expires_at: datetime | None = _ts()
    #: Keyed HMAC of the first material ever imported: kept for life (DESIGN §6.4).
    material_fingerprint: str | None = Field(default=None, max_length=128)


class KeyMaterial(SQLModel, table=True):
    """Material sealed under the root key; AAD binds it to (key id, version)."""

    __tablename__ = "key_materials"
    key_id: str = Field(primary_key=True, max_length=36)
    version: int = Field(primary_key=True)
    sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class Operation(SQLModel, table=True):
    """An accepted command. ``seq`` orders commands on one key (acceptance order)."""

    __tablename__ = "operations"
    __table_args__ = (
        Index("ix_operations_key_status", "key_id", "status", "seq"),
        Index("ix_operations_project_seq", "project", "seq"),
        Index("ix_operations_status_sent", "status", "sent_at"),
        Index("ix_operations_batch", "batch_id", "seq"),
        Index("ix_operations_queue_status", "queue", "status", "seq"),
        Index("ix_operations_project_status", "project", "status", "queue", "seq"),
    )
    seq: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    id: str = Field(unique=True, max_length=36)
    project: str = Field(max_length=128)
    kind: str = Field(max_length=32)
    #: The queue its messages go to (kms.commands.route_for).
    queue: str = Field(default="commands", max_length=32)
    key_id: str | None = Field(default=None, max_length=36)
    batch_id: str | None = Field(default=None, max_length=36)
    status: str = Field(default="QUEUED", max_length=16)
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    error_code: str | None = Field(default=None, max_length=64)
    error_message: str | None = Field(default=None, max_length=2048)
    attempts: int = Field(default=0)
    request_id: str | None = Field(default=None, max_length=64)
    token_id: str | None = Field(default=None, max_length=36)
    role: str | None = Field(default=None, max_length=16)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()
    sent_at: datetime | None = _ts()
    lease_until: datetime | None = _ts()


class Timer(SQLModel, table=True):
    """A deadline (deletion, material expiry) kept in the database, not in Redis (DESIGN §4)."""

    __tablename__ = "timers"
    __table_args__ = (
        UniqueConstraint("kind", "subject_id", name="uq_timers_kind_subject"),
        Index("ix_timers_due", "fired_at", "due_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)
    subject_id: str = Field(max_length=36)
    due_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    sent_at: datetime | None = _ts()
    fired_at: datetime | None = _ts()


class AuditEvent(SQLModel, table=True):
    """Append-only record of every state change and use of a key."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_project_id", "project", "id"),
        Index("ix_audit_key", "key_id", "id"),
        Index("ix_audit_project_at", "project", "at", "id"),
        Index("ix_audit_key_at", "key_id", "at", "id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    project: str = Field(max_length=128)
    token_id: str | None = Field(default=None, max_length=36)
    role: str | None = Field(default=None, max_length=16)
    action: str = Field(max_length=48)
    key_id: str | None = Field(default=None, max_length=36)
    outcome: str = Field(max_length=64)
    request_id: str | None = Field(default=None, max_length=64)
    operation_id: str | None = Field(default=None, max_length=36)


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_records"
    project: str = Field(primary_key=True, max_length=128)
    idempotency_key: str = Field(primary_key=True, max_length=256)
    request_hash: str = Field(max_length=64)
    operation_id: str = Field(max_length=36)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class KeyTag(SQLModel, table=True):
    """Tags as rows, so ``tag=k:v`` filters use an index (``Key.tags`` keeps them for display)."""

    __tablename__ = "key_tags"
    __table_args__ = (Index("ix_key_tags_name_value", "name", "value"),)
    key_id: str = Field(primary_key=True, max_length=36)
    name: str = Field(primary_key=True, max_length=128)
    value: str = Field(max_length=256)


class WrappingKey(SQLModel, table=True):
    """An RSA wrapping key pair for imports. Pre-generated into a pool per spec;
    issued to one key with an import token; destroyed when its validity ends."""

    __tablename__ = "wrapping_keys"
    __table_args__ = (
        Index("ix_wrapping_keys_pool", "spec", "issued_at"),
        Index("ix_wrapping_keys_expires", "expires_at"),
    )
    id: str = Field(primary_key=True, max_length=36)
    spec: str = Field(max_length=16)
    #: PKCS#8 DER private key sealed under the root key (AAD: wrapping key id).
    sealed_private: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    public_pem: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    issued_at: datetime | None = _ts()
    key_id: str | None = Field(default=None, max_length=36)
    expires_at: datetime | None = _ts()


class ImportPayload(SQLModel, table=True):
    """The uploaded (wrapped) material of an accepted import, until the worker ran it."""

    __tablename__ = "import_payloads"
    operation_id: str = Field(primary_key=True, max_length=36)
    key_id: str = Field(max_length=36)
    wrapping_key_id: str = Field(max_length=36)
    algorithm: str = Field(max_length=32)
    sealed_blob: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class Batch(SQLModel, table=True):
    """Many commands submitted at once; its items are operations with ``batch_id``."""

    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_project_seq", "project", "seq"),)
    seq: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    id: str = Field(unique=True, max_length=36)
    project: str = Field(max_length=128)
    total: int
    accepted: int
    rejected: int
    #: [{index, operation_id, key_id, error}] as answered at submission
    items: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    finished_at: datetime | None = _ts()
