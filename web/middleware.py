"""Request ids and the one mapping of errors to HTTP (DESIGN §5)."""

from __future__ import annotations

import logging
import re
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler

from kms import logs
from kms.errors import InternalError, KmsError, NotFound, PayloadTooLarge, ValidationError

logger = logging.getLogger("kms.web")

REQUEST_ID = web.RequestKey("request_id", str)
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def request_id(request: web.Request) -> str:
    return request.get(REQUEST_ID, "")


def error_response(exc: KmsError, rid: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {**exc.to_dict(), "request_id": rid}}
    return web.json_response(body, status=exc.http_status, headers=headers)


def _from_http_exception(exc: web.HTTPException) -> KmsError:
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge(
            "the request body is too large; the limit is 1 MiB (key material files are far smaller)"
        )
    if isinstance(exc, web.HTTPNotFound):
        return NotFound("no such endpoint; see /v1/openapi.json for the API")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return ValidationError(f"method not allowed here; allowed: {', '.join(sorted(exc.allowed_methods))}")
    return ValidationError(exc.reason or "bad request")


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-Id", "")
    rid = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
    request[REQUEST_ID] = rid
    logs.request_id.set(rid)
    try:
        response = await handler(request)
    except KmsError as exc:
        response = error_response(exc, rid, getattr(exc, "headers", None))
    except web.HTTPException as exc:
        if exc.status < 400:
            exc.headers["X-Request-Id"] = rid
            raise
        response = error_response(_from_http_exception(exc), rid)
    except Exception as exc:
        # The type only: exception text may quote input, and input may be secret.
        logger.error(
            "unhandled %s on %s %s (request %s)",
            type(exc).__name__,
            request.method,
            request.path,
            rid,
            exc_info=logger.isEnabledFor(logging.DEBUG),
        )
        response = error_response(
            InternalError("internal error; retry, and report the request id if it persists"), rid
        )
    response.headers["X-Request-Id"] = rid
    return response
