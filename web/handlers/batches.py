"""/v1/batches: many commands in one request, for batch jobs (DESIGN §5 "Batches")."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from aiohttp import web

from kms import validation
from kms.errors import KmsError, PayloadTooLarge, ValidationError
from kms.lifecycle import Command
from kms.specs import Manager
from models import repo
from web.auth import require
from web.commands import BatchItem, Caller, Writer, accept_batch, describe_batch
from web.context import Services, services
from web.handlers.common import LIMITS, RETRY_AFTER_S, caller_of
from web.handlers.imports import import_writer, upload_digest
from web.handlers.keys import CREATE_FIELDS, MEMBER, command_writer, key_writer
from web.http import body_hash, etag_json, idempotency_key, json_body, poll_until, prefer_wait, query_limit

MAX_BATCH_ITEMS = 1000
LIFECYCLE = {
    "enable": Command.ENABLE,
    "disable": Command.DISABLE,
    "schedule_deletion": Command.SCHEDULE_DELETION,
    "cancel_deletion": Command.CANCEL_DELETION,
}
COMMANDS = ("create_key", *LIFECYCLE, "import")


def _bytes(params: dict[str, Any], field: str) -> bytes:
    value = params.get(field)
    if not isinstance(value, str):
        raise ValidationError(f"params.{field} is required: base64 of the file's bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(f"params.{field} is not valid base64") from None


def item_writer(svc: Services, caller: Caller, raw: Any) -> tuple[Writer, bool]:
    """Validate one item like its single endpoint does; (writer, creates a key?)."""
    if not isinstance(raw, dict):
        raise ValidationError("each operation must be an object {command, key_id?, params?}")
    validation.known_fields(raw, {"command", "key_id", "params"}, "a batch operation")
    command, key_id, params = raw.get("command"), raw.get("key_id"), raw.get("params") or {}
    if command not in COMMANDS:
        raise ValidationError(f"command must be one of: {', '.join(COMMANDS)}")
    if not isinstance(params, dict):
        raise ValidationError("params must be an object")
    if command == "create_key":
        if key_id is not None:
            raise ValidationError("create_key takes no key_id")
        validation.known_fields(params, CREATE_FIELDS, "creating a key")
        return key_writer(caller, params, manager=Manager.CUSTOMER), True
    if not isinstance(key_id, str) or not key_id:
        raise ValidationError(f"{command} needs a key_id")
    if command == "import":
        validation.known_fields(params, {"encrypted_key_material", "import_token", "expires_at"}, "import")
        expires = params.get("expires_at")
        if expires is not None and not isinstance(expires, str):
            raise ValidationError("params.expires_at must be an RFC 3339 time")
        material, token = _bytes(params, "encrypted_key_material"), _bytes(params, "import_token")
        return import_writer(svc, caller, key_id, material, token, expires), False
    return command_writer(caller, key_id, LIFECYCLE[command], params), False


async def create_batch(request: web.Request) -> web.Response:
    principal = await require(request, *MEMBER)
    caller = caller_of(request, principal)
    body = await json_body(request)
    validation.known_fields(body, {"operations"}, "a batch")
    raw_items = body.get("operations")
    if not isinstance(raw_items, list) or not raw_items:
        raise ValidationError("operations must be a non-empty list of {command, key_id?, params?}")
    if len(raw_items) > MAX_BATCH_ITEMS:
        raise PayloadTooLarge(
            f"a batch holds at most {MAX_BATCH_ITEMS} operations; this one has {len(raw_items)}: split it"
        )
    svc = services(request)
    limits = request.app[LIMITS]
    limits.take(caller.project)
    items: list[BatchItem] = []
    new_keys = 0
    for index, raw in enumerate(raw_items):
        try:
            writer, creates = item_writer(svc, caller, raw)
        except KmsError as exc:
            items.append(BatchItem(index, error=exc))
            continue
        items.append(BatchItem(index, writer=writer))
        new_keys += creates
    await svc.run(
        lambda: limits.admit(
            caller.project, new_keys=new_keys, new_operations=sum(1 for i in items if i.writer)
        )
    )
    digest = body_hash(request, {"operations": [_digest_item(r) for r in raw_items]})
    batch = await svc.run(
        lambda: accept_batch(
            svc, caller, items, idempotency_key=idempotency_key(request), request_hash=digest
        )
    )
    wait = prefer_wait(request)
    if wait > 0:
        done = await poll_until(lambda: svc.run(_progress_if_done, svc, caller.project, batch["id"]), wait)
        if done:
            return web.json_response({"batch": {**done, "items": batch["items"]}}, status=200)
    return web.json_response(
        {"batch": batch},
        status=202,
        headers={"Location": f"/v1/batches/{batch['id']}", "Retry-After": RETRY_AFTER_S},
    )


def _digest_item(raw: Any) -> Any:
    """Imports are compared by digest (never keep the upload in the idempotency hash input)."""
    if isinstance(raw, dict) and raw.get("command") == "import" and isinstance(raw.get("params"), dict):
        p = raw["params"]
        return {
            **raw,
            "params": upload_digest(
                str(p.get("encrypted_key_material")).encode(),
                str(p.get("import_token")).encode(),
                p.get("expires_at"),
            ),
        }
    return raw


def _progress(svc: Services, project: str, batch_id: str) -> dict[str, Any]:
    with svc.db.read() as s:
        return describe_batch(s, repo.get_batch(s, project, batch_id))


def _progress_if_done(svc: Services, project: str, batch_id: str) -> dict[str, Any] | None:
    answer = _progress(svc, project, batch_id)
    return answer if answer["done"] else None


async def get_batch(request: web.Request) -> web.Response:
    principal = await require(request, *MEMBER)
    svc = services(request)
    batch_id = request.match_info["batch_id"]
    wait = prefer_wait(request)
    answer = await svc.run(_progress, svc, principal.project, batch_id)
    if wait > 0 and not answer["done"]:
        finished = await poll_until(
            lambda: svc.run(_progress_if_done, svc, principal.project, batch_id), wait
        )
        answer = (
            finished if finished is not None else await svc.run(_progress, svc, principal.project, batch_id)
        )
    headers = {} if answer["done"] else {"Retry-After": RETRY_AFTER_S}
    return etag_json(request, answer, headers=headers)


async def list_batches(request: web.Request) -> web.Response:
    principal = await require(request, *MEMBER)
    svc = services(request)
    limit = query_limit(request, default=20, maximum=100)
    cursor = request.query.get("cursor") or None

    def load() -> dict[str, Any]:
        with svc.db.read() as s:
            rows, next_cursor = repo.list_batches(s, principal.project, limit=limit, cursor=cursor)
            return {"batches": [describe_batch(s, b) for b in rows], "next_cursor": next_cursor}

    return web.json_response(await svc.run(load))
