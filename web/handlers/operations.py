"""/v1/operations: what happened to an accepted command."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from kms.commands import OperationStatus
from kms.errors import ValidationError
from kms.lifecycle import Command
from models import repo
from web.auth import Role, require
from web.commands import Accepted, describe_operation
from web.context import services
from web.handlers.common import answer
from web.http import etag_json, poll_until, prefer_wait, query_limit

ANY_ROLE = (Role.MEMBER, Role.ADMIN, Role.SERVICE)


async def get_operation(request: web.Request) -> web.Response:
    principal = await require(request, *ANY_ROLE)
    svc = services(request)
    op_id = request.match_info["operation_id"]
    accepted: Accepted | None = await svc.run(
        lambda: describe_operation(svc, principal.project, op_id, token_id=principal.token_id)
    )
    assert accepted is not None
    if prefer_wait(request) > 0:
        return await answer(request, principal.project, accepted)
    final = accepted.operation["status"] in ("SUCCEEDED", "FAILED")
    return etag_json(request, accepted.operation, headers={} if final else {"Retry-After": "1"})


async def list_operations(request: web.Request) -> web.Response:
    principal = await require(request, *ANY_ROLE)
    q = request.query
    status = q.get("status")
    if status and status.upper() not in OperationStatus.__members__:
        raise ValidationError(f"status must be one of: {', '.join(OperationStatus)}")
    kind = q.get("kind")
    if kind and kind not in {c.value for c in Command}:
        raise ValidationError(f"kind must be one of: {', '.join(c.value for c in Command)}")
    limit = query_limit(request)
    svc = services(request)

    def load() -> dict[str, Any]:
        with svc.db.read() as s:
            ops, cursor = repo.list_operations(
                s,
                principal.project,
                status=status.upper() if status else None,
                kind=kind,
                key_id=q.get("key_id"),
                batch_id=q.get("batch_id"),
                limit=limit,
                cursor=q.get("cursor") or None,
            )
            return {"operations": [repo.operation_to_dict(o) for o in ops], "next_cursor": cursor}

    return web.json_response(await svc.run(load))


__all__ = ["get_operation", "list_operations", "poll_until"]
