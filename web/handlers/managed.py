"""Provider-managed keys: a platform service creates them for a project."""

from __future__ import annotations

from aiohttp import web

from kms import validation
from kms.errors import ValidationError
from kms.specs import Manager
from web.auth import Role, require
from web.handlers.common import caller_of, submit
from web.handlers.keys import key_writer
from web.http import json_body

PROJECT_NAME_MAX = 128


async def create_managed_key(request: web.Request) -> web.Response:
    principal = await require(request, Role.SERVICE)
    project = request.match_info["project"]
    if not 1 <= len(project) <= PROJECT_NAME_MAX:
        raise ValidationError(f"project name must be 1 to {PROJECT_NAME_MAX} characters")
    body = await json_body(request)
    validation.known_fields(
        body, {"service", "name", "description", "tags", "key_spec", "key_usage"}, "creating a managed key"
    )
    service = body.get("service")
    if not isinstance(service, str) or not service.strip():
        raise ValidationError("service is required: the name of the platform service that owns the key")
    caller = caller_of(request, principal, project=project)
    writer = key_writer(
        caller, {**body, "origin": "VNGCLOUD"}, manager=Manager.VNGCLOUD, service=service.strip()
    )
    return await submit(request, caller, body, writer, creates_key=True)
