"""Small helpers for reading requests and writing answers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from kms.errors import ValidationError

T = TypeVar("T")

MAX_WAIT_S = 30.0


async def json_body(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        if optional:
            return {}
        raise ValidationError("request body is empty; send a JSON object")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValidationError("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    return body


def body_hash(request: web.Request, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{request.method} {request.path}\n{canonical}".encode()).hexdigest()


def idempotency_key(request: web.Request) -> str | None:
    value = request.headers.get("Idempotency-Key")
    if value is None:
        return None
    value = value.strip()
    if not 1 <= len(value) <= 256:
        raise ValidationError("Idempotency-Key must be 1 to 256 characters")
    return value


def prefer_wait(request: web.Request) -> float:
    """``Prefer: wait=N`` (N ≤ 30 s), 0 when absent."""
    for part in request.headers.get("Prefer", "").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                return max(0.0, min(float(value), MAX_WAIT_S))
            except ValueError:
                raise ValidationError("Prefer: wait=N needs a number of seconds (at most 30)") from None
    return 0.0


def query_limit(request: web.Request, default: int = 100, maximum: int = 1000) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"limit must be an integer between 1 and {maximum}") from None
    if not 1 <= value <= maximum:
        raise ValidationError(f"limit must be between 1 and {maximum}")
    return value


async def poll_until(check: Callable[[], Awaitable[T | None]], timeout_s: float) -> T | None:
    """Call ``check`` with growing pauses until it returns a value or time runs out."""
    deadline = time.monotonic() + timeout_s
    pause = 0.02
    while True:
        found = await check()
        if found is not None:
            return found
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        await asyncio.sleep(min(pause, remaining))
        pause = min(pause * 1.5, 0.1)


def etag_json(request: web.Request, body: Any, *, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer with an ``ETag``; ``If-None-Match`` with that tag gets 304 (cheap polling)."""
    text = json.dumps(body, separators=(",", ":"), sort_keys=True)
    tag = '"' + hashlib.sha256(text.encode()).hexdigest()[:24] + '"'
    out = {"ETag": tag, "Cache-Control": "no-cache", **(headers or {})}
    wanted = {t.strip().removeprefix("W/") for t in request.headers.get("If-None-Match", "").split(",")}
    if tag in wanted or "*" in wanted:
        return web.Response(status=304, headers=out)
    return web.json_response(text=text, headers=out)
