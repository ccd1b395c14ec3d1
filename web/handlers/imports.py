"""Importing key material (DESIGN §5, §6): import parameters and the upload.

Token authenticity, its binding to the key, its expiry and the size limits are
checked here, at once; unwrapping and validation run in the import actor.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from sqlmodel import Session

from kms import validation
from kms.clock import parse_rfc3339, rfc3339
from kms.commands import IMPORT_PARAMETERS_VALID_DAYS, MAX_MATERIAL_EXPIRY_DAYS
from kms.crypto.envelope import PURPOSE_IMPORT_TOKEN, import_payload_context, wrapping_key_context
from kms.crypto.import_token import issue_import_token, verify_import_token
from kms.crypto.wrapping import (
    MAX_WRAPPED_MATERIAL_BYTES,
    generate_wrapping_key,
    parse_wrapping_algorithm,
    parse_wrapping_key_spec,
)
from kms.errors import (
    ExpiredImportToken,
    InvalidImportToken,
    InvalidKeyMaterial,
    PayloadTooLarge,
    ValidationError,
)
from kms.lifecycle import Command
from models import repo
from models.tables import Key, Operation
from web.auth import require
from web.commands import Caller, Writer, check_command, check_command_quickly, new_operation
from web.context import Services, services
from web.handlers.common import AUDIT, WRAPPING_POOL, caller_of, submit
from web.handlers.keys import MEMBER
from web.http import json_body

IMPORT_FIELDS = {"encrypted_key_material", "import_token", "expires_at"}


async def import_parameters(request: web.Request) -> web.Response:
    principal = await require(request, *MEMBER)
    caller = caller_of(request, principal)
    body = await json_body(request)
    validation.known_fields(body, {"wrapping_key_spec", "wrapping_algorithm"}, "import parameters")
    for name in ("wrapping_key_spec", "wrapping_algorithm"):
        if body.get(name) is None:
            raise ValidationError(
                f"{name} is required; e.g. wrapping_key_spec RSA_4096, wrapping_algorithm RSAES_OAEP_SHA_256"
            )
    spec = parse_wrapping_key_spec(body["wrapping_key_spec"])
    algorithm = parse_wrapping_algorithm(body["wrapping_algorithm"])
    key_id = request.match_info["key_id"]
    svc = services(request)

    pool, audit = request.app[WRAPPING_POOL], request.app[AUDIT]

    def issue() -> dict[str, Any]:
        check_command_quickly(svc, caller, key_id, Command.IMPORT_MATERIAL)
        taken = pool.take(spec.value)
        if taken is None:  # the pool ran dry: make one pair here, slower but correct
            private_der, public_pem = generate_wrapping_key(spec)
            wrapping_id = repo.new_id()
            sealed = svc.keyring.seal(private_der, wrapping_key_context(wrapping_id))
        # the validity starts when the pair is in hand (generating one can take a second)
        now = svc.clock.now()
        valid_to = now + timedelta(seconds=IMPORT_PARAMETERS_VALID_DAYS * svc.settings.day_s)
        if taken is not None:
            wrapping_id, public_pem = taken
            pool.bind(wrapping_id, key_id, valid_to)
        else:
            with svc.db.write() as s:
                row = repo.add_wrapping_key(
                    s,
                    key_id=wrapping_id,
                    spec=spec.value,
                    now=now,
                    public_pem=public_pem,
                    sealed_private=sealed,
                )
                row.issued_at, row.key_id, row.expires_at = now, key_id, valid_to
        audit.record(
            project=caller.project,
            action="get_import_parameters",
            outcome="SUCCEEDED",
            key_id=key_id,
            token_id=caller.token_id,
            role=caller.role,
            request_id=caller.request_id,
        )
        token = issue_import_token(
            svc.keyring.derive(PURPOSE_IMPORT_TOKEN),
            key_id=key_id,
            wrapping_key_id=wrapping_id,
            wrapping_key_spec=spec,
            algorithm=algorithm,
            expires_at=valid_to,
        )
        return {
            "key_id": key_id,
            "wrapping_key_spec": spec.value,
            "wrapping_algorithm": algorithm.value,
            "public_key_pem": public_pem,
            "import_token": base64.b64encode(token).decode(),
            "parameters_valid_to": rfc3339(valid_to),
        }

    return web.json_response(await svc.run(issue))


def _b64(value: Any, field: str) -> bytes:
    if not isinstance(value, str):
        raise ValidationError(f"{field} is required: base64 of the file's bytes")
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(f"{field} is not valid base64") from None


async def _read_upload(request: web.Request) -> tuple[bytes, bytes, str | None]:
    """(encrypted material, token, expires_at) from JSON (base64) or multipart (raw files)."""
    if request.content_type == "multipart/form-data":
        form = await request.post()  # bounded by client_max_size: 413 past 1 MiB
        unknown = sorted(set(form) - IMPORT_FIELDS)
        if unknown:
            raise ValidationError(
                f"unknown form field(s): {', '.join(unknown)}; send {', '.join(sorted(IMPORT_FIELDS))}"
            )
        parts: dict[str, bytes] = {}
        for name in ("encrypted_key_material", "import_token"):
            value = form.get(name)
            if value is None:
                raise ValidationError(f"form field {name} is missing: upload the file")
            parts[name] = value.file.read() if isinstance(value, web.FileField) else _b64(value, name)
        expires = form.get("expires_at")
        if expires is not None and not isinstance(expires, str):
            raise ValidationError("expires_at must be a plain form field with an RFC 3339 time")
        return parts["encrypted_key_material"], parts["import_token"], (expires or None)
    body = await json_body(request)
    validation.known_fields(body, IMPORT_FIELDS, "importing key material")
    expires = body.get("expires_at")
    if expires is not None and not isinstance(expires, str):
        raise ValidationError("expires_at must be an RFC 3339 time, e.g. 2027-01-31T00:00:00Z")
    return (
        _b64(body.get("encrypted_key_material"), "encrypted_key_material"),
        _b64(body.get("import_token"), "import_token"),
        expires or None,
    )


def _expiry(raw: str | None, now: datetime, day_s: float) -> datetime | None:
    if raw is None:
        return None
    try:
        expires_at = parse_rfc3339(raw)
    except ValueError:
        raise ValidationError(
            f"expires_at {raw!r} is not an RFC 3339 time, e.g. 2027-01-31T00:00:00Z"
        ) from None
    if expires_at <= now:
        raise ValidationError("expires_at must be in the future")
    latest = now + timedelta(seconds=MAX_MATERIAL_EXPIRY_DAYS * day_s)
    if expires_at > latest:
        raise ValidationError(
            f"expires_at may be at most {MAX_MATERIAL_EXPIRY_DAYS} days ahead (until {rfc3339(latest)})"
        )
    return expires_at


def import_writer(
    svc: Services, caller: Caller, key_id: str, material: bytes, token: bytes, raw_expiry: str | None
) -> Writer:
    """Check what can be checked at once (sizes, the token, the expiry) and return
    the writer that accepts the import."""
    if not material:
        raise InvalidKeyMaterial("the encrypted key material is empty; upload EncryptedKeyMaterial.bin")
    if len(material) > MAX_WRAPPED_MATERIAL_BYTES:
        raise PayloadTooLarge(
            f"the encrypted key material is {len(material)} bytes; the limit is {MAX_WRAPPED_MATERIAL_BYTES}"
        )
    now = svc.clock.now()
    claims = verify_import_token(svc.keyring.derive_all(PURPOSE_IMPORT_TOKEN), token, key_id=key_id, now=now)
    expires_at = _expiry(raw_expiry, now, svc.settings.day_s)

    def write(s: Session, now: datetime) -> tuple[Operation, Key]:
        key = check_command(s, caller, key_id, Command.IMPORT_MATERIAL)
        wrapping = repo.get_wrapping_key(s, claims.wrapping_key_id)
        if wrapping is None:
            raise ExpiredImportToken(
                "the wrapping key of this import token has expired; download a new wrapping public key "
                "and import token for this key"
            )
        if wrapping.key_id is not None and wrapping.key_id != key_id:  # (the token binds it too)
            raise InvalidImportToken("the import token was issued for another key")
        params = {
            "wrapping_key_id": wrapping.id,
            "algorithm": claims.algorithm.value,
            "wrapping_key_spec": claims.wrapping_key_spec.value,
            "expires_at": rfc3339(expires_at),
        }
        op = new_operation(caller, Command.IMPORT_MATERIAL, key_id, params, now)
        s.add(op)
        repo.add_import_payload(
            s,
            operation_id=op.id,
            key_id=key_id,
            wrapping_key_id=wrapping.id,
            algorithm=claims.algorithm.value,
            sealed_blob=svc.keyring.seal(material, import_payload_context(op.id)),
            now=now,
        )
        return op, key

    return write


def upload_digest(material: bytes, token: bytes, raw_expiry: str | None) -> dict[str, Any]:
    """What Idempotency-Key compares for an import: digests, never the upload itself."""
    return {
        "material": hashlib.sha256(material).hexdigest(),
        "token": hashlib.sha256(token).hexdigest(),
        "expires_at": raw_expiry,
    }


async def import_material(request: web.Request) -> web.Response:
    principal = await require(request, *MEMBER)
    caller = caller_of(request, principal)
    key_id = request.match_info["key_id"]
    material, token, raw_expiry = await _read_upload(request)
    writer = import_writer(services(request), caller, key_id, material, token, raw_expiry)
    return await submit(request, caller, upload_digest(material, token, raw_expiry), writer)
