"""Shared steps of handlers that accept commands."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from models.repo import Principal
from web.audit import AuditBuffer
from web.batcher import AcceptBatcher
from web.commands import Accepted, Caller, Submission, Writer, describe_operation
from web.context import services
from web.http import body_hash, idempotency_key, poll_until, prefer_wait
from web.limits import Limits
from web.middleware import request_id
from web.wrapping_pool import WrappingPool

RETRY_AFTER_S = "1"
BATCHER = web.AppKey("batcher", AcceptBatcher)
LIMITS = web.AppKey("limits", Limits)
AUDIT = web.AppKey("audit", AuditBuffer)
WRAPPING_POOL = web.AppKey("wrapping_pool", WrappingPool)


def caller_of(request: web.Request, principal: Principal, project: str | None = None) -> Caller:
    return Caller(project or principal.project, principal.token_id, principal.role, request_id(request))


async def submit(
    request: web.Request, caller: Caller, body: dict[str, Any], write: Writer, *, creates_key: bool = False
) -> web.Response:
    limits = request.app[LIMITS]
    limits.take(caller.project)
    if not limits.admit_cached(caller.project, new_keys=int(creates_key), new_operations=1):
        await services(request).run(
            lambda: limits.admit(caller.project, new_keys=int(creates_key), new_operations=1)
        )
    submission = Submission(caller, write, idempotency_key(request), body_hash(request, body))
    accepted = await request.app[BATCHER].submit(submission)
    return await answer(request, caller.project, accepted)


async def answer(request: web.Request, project: str, accepted: Accepted) -> web.Response:
    """202 with the operation, or — with ``Prefer: wait=N`` — 200 once it has finished."""
    wait = prefer_wait(request)
    op_id = accepted.operation["id"]
    if wait > 0 and accepted.operation["status"] not in ("SUCCEEDED", "FAILED"):
        svc = services(request)
        done = await poll_until(
            lambda: svc.run(lambda: describe_operation(svc, project, op_id, only_final=True)), wait
        )
        accepted = done or accepted
    body: dict[str, Any] = {"operation": accepted.operation}
    if accepted.key is not None:
        body["key"] = accepted.key
    if accepted.operation["status"] in ("SUCCEEDED", "FAILED"):
        return web.json_response(body, status=200)
    return web.json_response(
        body,
        status=202,
        headers={"Location": f"/v1/operations/{op_id}", "Retry-After": RETRY_AFTER_S},
    )
