"""Importing key material (DESIGN §6): unwrap, validate, check identity, store.

Unwrapping and validation run before the transaction (they can take a quarter
of a second for RSA-4096 material); the transaction then re-checks the
lifecycle and the identical-material rule with the key row locked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dramatiq
from sqlmodel import Session

from kms.clock import parse_rfc3339, rfc3339
from kms.commands import ROUTE_IMPORT, ROUTE_POOL, TimerKind
from kms.crypto.envelope import (
    PURPOSE_MATERIAL_FINGERPRINT,
    constant_time_equal,
    import_payload_context,
    material_context,
    wrapping_key_context,
)
from kms.crypto.material import material_fingerprint, unwrap_and_validate
from kms.crypto.wrapping import generate_wrapping_key
from kms.errors import ExpiredImportToken, IncorrectKeyMaterial, InvalidImportToken, NotFound
from kms.lifecycle import Command, MaterialState, plan
from kms.specs import KeySpec, KeyUsage
from models import repo
from models.tables import Key, Operation
from workers.engine import DrainResult, arm_timer, register, run_operation
from workers.runtime import Runtime, runtime

logger = logging.getLogger("kms.workers")

#: Imported material always lives at version 1: re-imports must be identical.
IMPORTED_VERSION = 1


@dataclass(frozen=True)
class PreparedImport:
    sealed: bytes = b""
    #: fingerprints of the new material under each root key (primary first)
    fingerprints: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return "PreparedImport(…)"


def prepare_import(rt: Runtime, op: Operation) -> PreparedImport:
    with rt.db.read() as s:
        payload = repo.get_import_payload(s, op.id)
        key = repo.find_key(s, op.key_id or "")
        wrapping = repo.get_wrapping_key(s, payload.wrapping_key_id) if payload else None
    if key is None:
        raise NotFound(f"key {op.key_id} no longer exists; it was deleted")
    if payload is None:
        raise InvalidImportToken("the uploaded material of this import is gone; submit the import again")
    if wrapping is None:
        raise ExpiredImportToken(
            "the wrapping key of this import token has expired and was destroyed; "
            "download a new wrapping public key and import token, wrap the material again and retry"
        )
    spec = KeySpec(key.key_spec)
    private_der = rt.keyring.open(wrapping.sealed_private, wrapping_key_context(wrapping.id))
    blob = rt.keyring.open(payload.sealed_blob, import_payload_context(op.id))
    canonical = unwrap_and_validate(private_der, payload.algorithm, blob, spec, KeyUsage(key.key_usage))
    fingerprints = tuple(
        material_fingerprint(k, spec, canonical) for k in rt.keyring.derive_all(PURPOSE_MATERIAL_FINGERPRINT)
    )
    return PreparedImport(
        rt.keyring.seal(canonical, material_context(key.id, IMPORTED_VERSION)), fingerprints
    )


def apply_import(
    rt: Runtime, s: Session, key: Key, op: Operation, now: datetime, prepared: Any, out: DrainResult
) -> dict[str, Any]:
    assert isinstance(prepared, PreparedImport)
    new_state = plan(Command.IMPORT_MATERIAL, repo.key_facts(key), key.id)
    stored = key.material_fingerprint
    if stored is not None and not any(constant_time_equal(stored, fp) for fp in prepared.fingerprints):
        raise IncorrectKeyMaterial(
            f"this key material is not the material imported into key {key.id} before; a key accepts "
            "only identical material for its whole life. Import the original material, or create a new "
            "key (origin EXTERNAL) for this material"
        )
    raw_expiry = (op.params or {}).get("expires_at")
    expires_at = parse_rfc3339(raw_expiry) if raw_expiry else None
    repo.replace_material(s, key.id, IMPORTED_VERSION, prepared.sealed, now)
    if expires_at is not None:
        arm_timer(rt, s, TimerKind.EXPIRE_MATERIAL, key.id, expires_at, now, out)
    else:
        repo.cancel_timer(s, TimerKind.EXPIRE_MATERIAL.value, key.id)
    repo.delete_import_payload(s, op.id)
    if not repo.cas_update_key(
        s,
        key,
        now,
        state=new_state.value,
        material_state=MaterialState.ACTIVE.value,
        material_version=IMPORTED_VERSION,
        material_imported_at=now,
        material_expires_at=expires_at,
        material_fingerprint=stored or prepared.fingerprints[0],
    ):
        raise RuntimeError("compare-and-set on a locked key failed")
    s.expire(key)
    return {"state": new_state.value, "material": {"state": "ACTIVE", "expires_at": rfc3339(expires_at)}}


register(Command.IMPORT_MATERIAL, apply_import, prepare_import)


@dramatiq.actor(
    actor_name=ROUTE_IMPORT.actor_name,
    queue_name=ROUTE_IMPORT.queue.value,
    max_retries=8,
    min_backoff=200,
    max_backoff=10_000,
)
def import_material(operation_id: str) -> None:
    """Unwrap, validate and store imported material (DESIGN §6)."""
    run_operation(operation_id)


def refill_pool(rt: Runtime, spec: str) -> int:
    """Generate wrapping key pairs until the pool of ``spec`` is full; return how many."""
    target = rt.settings.wrapping_pool_size
    made = 0
    while made < target:
        with rt.db.read() as s:
            if repo.pool_size(s, spec) >= target:
                break
        private_der, public_pem = generate_wrapping_key(spec)
        wrapping_id = repo.new_id()
        sealed = rt.keyring.seal(private_der, wrapping_key_context(wrapping_id))
        with rt.db.write() as s:
            repo.add_wrapping_key(
                s,
                key_id=wrapping_id,
                spec=spec,
                sealed_private=sealed,
                public_pem=public_pem,
                now=rt.clock.now(),
            )
        made += 1
    return made


@dramatiq.actor(
    actor_name=ROUTE_POOL.actor_name, queue_name=ROUTE_POOL.queue.value, max_retries=3, min_backoff=1000
)
def refill_wrapping_keys(spec: str) -> None:
    """Keep the pool of pre-generated wrapping key pairs of one spec full."""
    made = refill_pool(runtime(), spec)
    if made:
        logger.info("wrapping key pool %s: %d pairs generated", spec, made)
