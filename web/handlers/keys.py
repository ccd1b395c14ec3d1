"""/v1/keys: create, list, show, edit, and the lifecycle commands."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from aiohttp import web
from sqlmodel import Session

from kms import validation
from kms.commands import route_for
from kms.errors import ManagedKeyReadOnly, ValidationError
from kms.lifecycle import Command, KeyState
from kms.specs import Manager, parse_origin, resolve_key_config
from models import repo
from models.tables import Key, KeyTag, Operation
from web.auth import Role, require
from web.commands import Caller, Writer, check_command, new_operation
from web.context import services
from web.handlers.common import caller_of, submit
from web.http import json_body, query_limit

MEMBER = (Role.MEMBER, Role.ADMIN)
READERS = (Role.MEMBER, Role.ADMIN, Role.SERVICE)

CREATE_FIELDS = {"name", "description", "tags", "key_spec", "key_usage", "key_type", "origin"}


def key_writer(
    caller: Caller, body: dict[str, Any], *, manager: Manager, service: str | None = None
) -> Writer:
    """Validate a create body and return the writer that inserts key + operation."""
    name = validation.key_name(body.get("name"))
    description = validation.description(body.get("description"))
    tags = validation.tags(body.get("tags"))
    spec, usage, key_type = resolve_key_config(
        body.get("key_spec"), body.get("key_usage"), body.get("key_type")
    )
    origin = parse_origin(body.get("origin"))

    def write(s: Session, now: datetime) -> tuple[Operation, Key]:
        # Rows, not ORM objects: a batch accepts a thousand of these in one transaction.
        key_id = repo.new_id()
        repo.ensure_project(s, caller.project, now)
        key = repo.bulk_add(
            s,
            Key,
            repo.new_key_row(
                id=key_id,
                project=caller.project,
                name=name,
                description=description,
                tags=tags,
                key_type=key_type.value,
                key_spec=spec.value,
                key_usage=usage.value,
                origin=origin.value,
                manager=manager.value,
                service=service,
                state=KeyState.CREATING.value,
                created_at=now,
                updated_at=now,
            ),
        )
        for tag, value in tags.items():
            repo.bulk_add(s, KeyTag, {"key_id": key_id, "name": tag, "value": value})
        params = {"key_spec": spec.value, "origin": origin.value}
        op = repo.bulk_add(
            s,
            Operation,
            repo.new_operation_row(
                id=repo.new_id(),
                project=caller.project,
                kind=Command.CREATE_KEY.value,
                queue=route_for(Command.CREATE_KEY, spec.value, origin.value).queue.value,
                key_id=key_id,
                params=params,
                request_id=caller.request_id,
                token_id=caller.token_id,
                role=caller.role,
                created_at=now,
                sent_at=now,
            ),
        )
        return cast(Operation, op), cast(Key, key)

    return write


async def create_key(request: web.Request) -> web.Response:
    caller = caller_of(request, await require(request, *MEMBER))
    body = await json_body(request)
    validation.known_fields(body, CREATE_FIELDS, "creating a key")
    return await submit(
        request, caller, body, key_writer(caller, body, manager=Manager.CUSTOMER), creates_key=True
    )


async def list_keys(request: web.Request) -> web.Response:
    principal = await require(request, *READERS)
    q = request.query
    manager = q.get("manager")
    if manager is not None and manager.upper() not in Manager.__members__:
        raise ValidationError("manager must be CUSTOMER or VNGCLOUD")
    state = q.get("state")
    if state is not None and state.upper() not in KeyState.__members__:
        raise ValidationError(f"state must be one of: {', '.join(KeyState)}")
    tag = validation.tag_filter(q["tag"]) if "tag" in q else None
    limit = query_limit(request)
    svc = services(request)

    def load() -> dict[str, Any]:
        with svc.db.read() as s:
            keys, cursor = repo.list_keys(
                s,
                principal.project,
                manager=manager.upper() if manager else None,
                state=state.upper() if state else None,
                q=q.get("q") or None,
                tag=tag,
                limit=limit,
                cursor=q.get("cursor") or None,
            )
            return {"keys": [repo.key_to_dict(k) for k in keys], "next_cursor": cursor}

    return web.json_response(await svc.run(load))


async def get_key(request: web.Request) -> web.Response:
    principal = await require(request, *READERS)
    svc = services(request)
    key_id = request.match_info["key_id"]

    def load() -> dict[str, Any]:
        with svc.db.read() as s:
            return repo.key_to_dict(repo.get_key(s, principal.project, key_id))

    return web.json_response(await svc.run(load))


async def update_key(request: web.Request) -> web.Response:
    principal = await require(request, *MEMBER)
    body = await json_body(request)
    validation.known_fields(body, {"name", "description", "tags"}, "editing a key")
    changes: dict[str, Any] = {}
    if "name" in body:
        changes["name"] = validation.key_name(body["name"])
    if "description" in body:
        changes["description"] = validation.description(body["description"])
    if "tags" in body:
        changes["tags"] = validation.tags(body["tags"])
    svc = services(request)
    key_id = request.match_info["key_id"]

    def write() -> dict[str, Any]:
        now = svc.clock.now()
        with svc.db.write() as s:
            key = repo.get_key(s, principal.project, key_id, for_update=True)
            if key.manager == Manager.VNGCLOUD:
                raise ManagedKeyReadOnly(f"key {key_id} is managed by a VNG Cloud service; it is read-only")
            if changes:
                repo.cas_update_key(s, key, now, **changes)
                if "tags" in changes:
                    repo.set_tags(s, key_id, changes["tags"])
                s.expire(key)
            return repo.key_to_dict(repo.get_key(s, principal.project, key_id))

    return web.json_response(await svc.run(write))


#: Fields each lifecycle command takes.
COMMAND_FIELDS: dict[Command, set[str]] = {
    Command.ENABLE: set(),
    Command.DISABLE: set(),
    Command.SCHEDULE_DELETION: {"pending_window_days"},
    Command.CANCEL_DELETION: set(),
    Command.DELETE_MATERIAL: set(),
}


def command_writer(caller: Caller, key_id: str, command: Command, body: dict[str, Any]) -> Writer:
    """Validate a lifecycle command's body; the writer refuses at once what the
    lifecycle table refuses."""
    validation.known_fields(body, COMMAND_FIELDS[command], command.value.replace("_", " "))
    params: dict[str, Any] = {}
    if command is Command.SCHEDULE_DELETION:
        params["pending_window_days"] = validation.pending_window_days(body.get("pending_window_days"))

    def write(s: Session, now: datetime) -> tuple[Operation, Key]:
        key = check_command(s, caller, key_id, command)
        op = new_operation(caller, command, key_id, params, now)
        s.add(op)
        return op, key

    return write


def _command_handler(command: Command):  # type: ignore[no-untyped-def]
    async def handler(request: web.Request) -> web.Response:
        caller = caller_of(request, await require(request, *MEMBER))
        body = await json_body(request, optional=True)
        writer = command_writer(caller, request.match_info["key_id"], command, body)
        return await submit(request, caller, body, writer)

    handler.__name__ = command.value
    return handler


enable_key = _command_handler(Command.ENABLE)
disable_key = _command_handler(Command.DISABLE)
schedule_deletion = _command_handler(Command.SCHEDULE_DELETION)
cancel_deletion = _command_handler(Command.CANCEL_DELETION)
delete_material = _command_handler(Command.DELETE_MATERIAL)
