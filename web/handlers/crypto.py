"""Using keys (DESIGN §5 "Crypto"): synchronous, in the web process.

Each handler: authenticate, read the body, get the usable key (state and usage
enforced), call the crypto core, answer. Failures of decryption are one opaque
``InvalidCiphertext``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from aiohttp import web

from kms import validation
from kms.crypto.usage import LoadedKey, parse_ciphertext_header, parse_message_type, parse_signing_algorithm
from kms.errors import InvalidCiphertext, KmsError, UnsupportedOperation, ValidationError
from kms.specs import KeyType
from web.auth import require
from web.context import services
from web.handlers.common import AUDIT
from web.handlers.keys import MEMBER
from web.http import json_body
from web.keycache import KeyCache
from web.middleware import request_id

CACHE = KeyCache()


def _b64(body: dict[str, Any], field: str, *, required: bool = True) -> bytes:
    value = body.get(field)
    if value is None:
        if required:
            raise ValidationError(f"{field} is required (base64)")
        return b""
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(f"{field} is not valid base64") from None


def _enc(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def _use(
    request: web.Request,
    fields: set[str],
    work: Callable[[LoadedKey, dict[str, Any]], dict[str, Any]],
    *,
    body_optional: bool = False,
) -> web.Response:
    principal = await require(request, *MEMBER)
    body = await json_body(request, optional=body_optional)
    validation.known_fields(body, fields, request.path.rsplit("/", 1)[-1])
    svc = services(request)
    key_id = request.match_info["key_id"]

    audit = request.app[AUDIT]
    event = {
        "project": principal.project,
        "token_id": principal.token_id,
        "role": principal.role,
        "action": request.path.rsplit("/", 1)[-1],
        "key_id": key_id,
        "request_id": request_id(request),
    }

    def run() -> dict[str, Any]:
        try:
            key = CACHE.usable(svc, principal.project, key_id)
            answer = {"key_id": key_id, **work(key, body)}
        except KmsError as exc:
            audit.record(**event, outcome=f"FAILED:{exc.code}")
            raise
        audit.record(**event, outcome="SUCCEEDED")
        return answer

    return web.json_response(await svc.run(run))


async def encrypt(request: web.Request) -> web.Response:
    return await _use(
        request,
        {"plaintext", "aad"},
        lambda key, body: {
            "ciphertext": _enc(key.encrypt(_b64(body, "plaintext"), _b64(body, "aad", required=False)))
        },
    )


async def decrypt(request: web.Request) -> web.Response:
    def work(key: LoadedKey, body: dict[str, Any]) -> dict[str, Any]:
        ciphertext = _b64(body, "ciphertext")
        header = parse_ciphertext_header(ciphertext)
        if header.key_id != key.key_id:  # another key's (or project's) ciphertext: as if unknown
            raise InvalidCiphertext(
                "the ciphertext could not be decrypted with this key; check the "
                "ciphertext, the key and the aad"
            )
        return {"plaintext": _enc(key.decrypt(ciphertext, _b64(body, "aad", required=False)))}

    return await _use(request, {"ciphertext", "aad"}, work)


async def generate_data_key(request: web.Request) -> web.Response:
    def work(key: LoadedKey, body: dict[str, Any]) -> dict[str, Any]:
        size = body.get("number_of_bytes", 32)
        if isinstance(size, bool) or not isinstance(size, int):
            raise ValidationError("number_of_bytes must be an integer from 1 to 1024")
        plaintext, ciphertext = key.generate_data_key(size, _b64(body, "aad", required=False))
        return {"plaintext": _enc(plaintext), "ciphertext": _enc(ciphertext)}

    return await _use(request, {"number_of_bytes", "aad"}, work, body_optional=True)


async def sign(request: web.Request) -> web.Response:
    def work(key: LoadedKey, body: dict[str, Any]) -> dict[str, Any]:
        algorithm = parse_signing_algorithm(body.get("signing_algorithm"))
        signature = key.sign(
            message=_b64(body, "message"),
            message_type=parse_message_type(body.get("message_type")),
            algorithm=algorithm,
        )  # type: ignore[arg-type]
        return {"signature": _enc(signature), "signing_algorithm": str(algorithm).upper()}

    return await _use(request, {"message", "message_type", "signing_algorithm"}, work)


async def verify(request: web.Request) -> web.Response:
    def work(key: LoadedKey, body: dict[str, Any]) -> dict[str, Any]:
        algorithm = parse_signing_algorithm(body.get("signing_algorithm"))
        valid = key.verify(
            message=_b64(body, "message"),
            message_type=parse_message_type(body.get("message_type")),
            algorithm=algorithm,
            signature=_b64(body, "signature"),
        )
        return {"valid": bool(valid), "signing_algorithm": algorithm.value}

    return await _use(request, {"message", "message_type", "signing_algorithm", "signature"}, work)


async def public_key(request: web.Request) -> web.Response:
    principal = await require(request, *MEMBER)
    svc = services(request)
    key_id = request.match_info["key_id"]

    def run() -> dict[str, Any]:
        key = CACHE.usable(svc, principal.project, key_id)
        if key.spec.key_type is not KeyType.ASYMMETRIC:
            raise UnsupportedOperation(f"key {key_id} is symmetric ({key.spec}); it has no public key")
        answer: dict[str, Any] = {
            "key_id": key_id,
            "public_key_pem": key.public_key_pem(),
            "key_spec": key.spec.value,
            "key_usage": key.usage.value,
        }
        if key.signing_algorithms:
            answer["signing_algorithms"] = [a.value for a in key.signing_algorithms]
        else:
            answer["encryption_algorithms"] = [a.value for a in key.encryption_algorithms]
        return answer

    return web.json_response(await svc.run(run))
