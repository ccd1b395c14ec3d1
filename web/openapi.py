"""/v1/openapi.json, generated from the URL table so it describes every endpoint."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

import kms
from kms.errors import ALL_ERRORS

_ERROR = {"$ref": "#/components/schemas/Error"}


def build_spec() -> dict[str, Any]:
    from web.routes import ROUTES

    paths: dict[str, Any] = {}
    for route in ROUTES:
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", route.path)
        ]
        responses: dict[str, Any] = {
            "200": {"description": "OK"},
            "default": {"description": "Error", "content": {"application/json": {"schema": _ERROR}}},
        }
        if route.accepts:
            responses["202"] = {"description": "Accepted: poll the operation at Location"}
        op: dict[str, Any] = {
            "summary": route.summary,
            "operationId": route.handler.__name__,
            "parameters": params,
            "responses": responses,
        }
        if route.roles:
            op["security"] = [{"bearer": []}]
            op["description"] = "Roles: " + ", ".join(route.roles)
        if route.method in ("POST", "PATCH"):
            op["requestBody"] = {
                "required": False,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        paths.setdefault(route.path, {})[route.method.lower()] = op
    paths["/v1/openapi.json"] = {
        "get": {
            "summary": "This document",
            "operationId": "openapi",
            "responses": {"200": {"description": "OK"}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "KMS: customer-managed keys", "version": kms.__version__},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "code": {"type": "string", "enum": sorted({e.code for e in ALL_ERRORS})},
                                "message": {"type": "string"},
                                "request_id": {"type": "string"},
                            },
                        }
                    },
                }
            },
        },
    }


async def openapi_handler(request: web.Request) -> web.Response:
    return web.json_response(build_spec())
