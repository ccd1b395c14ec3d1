"""Liveness and readiness."""

from __future__ import annotations

from aiohttp import web

from kms.errors import Unavailable
from web.context import services


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    svc = services(request)
    checks: dict[str, str] = {}
    for name, probe in (("database", svc.db.ping), ("redis", svc.queue.ping)):
        try:
            await svc.run(probe)
            checks[name] = "ok"
        except Exception:
            checks[name] = "unavailable"
    if any(v != "ok" for v in checks.values()):
        down = ", ".join(k for k, v in checks.items() if v != "ok")
        raise Unavailable(f"not ready: {down} unreachable", **checks)
    return web.json_response({"status": "ready", "checks": checks})
