"""GET /v1/audit: the project's audit trail (append-only)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from models import repo
from web.auth import Role, require
from web.context import services
from web.http import query_limit


async def list_audit(request: web.Request) -> web.Response:
    principal = await require(request, Role.MEMBER, Role.ADMIN)
    svc = services(request)
    q = request.query
    limit = query_limit(request, default=100, maximum=1000)

    def load() -> dict[str, Any]:
        with svc.db.read() as s:
            rows, cursor = repo.list_audit(
                s,
                principal.project,
                key_id=q.get("key_id") or None,
                action=q.get("action") or None,
                limit=limit,
                cursor=q.get("cursor") or None,
            )
            return {"events": [repo.audit_to_dict(r) for r in rows], "next_cursor": cursor}

    return web.json_response(await svc.run(load))
