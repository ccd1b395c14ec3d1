"""The aiohttp application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from web.audit import AuditBuffer
from web.batcher import AcceptBatcher
from web.context import SERVICES, Services
from web.handlers.common import AUDIT, BATCHER, LIMITS, WRAPPING_POOL
from web.limits import Limits
from web.metrics import metrics_middleware
from web.middleware import errors_middleware
from web.routes import add_routes
from web.wrapping_pool import WrappingPool

#: Bodies above this answer 413 PayloadTooLarge (import uploads are far smaller).
MAX_BODY_BYTES = 1024 * 1024


def create_app(svc: Services) -> web.Application:
    app = web.Application(middlewares=[metrics_middleware, errors_middleware], client_max_size=MAX_BODY_BYTES)
    app[SERVICES] = svc
    app[BATCHER] = AcceptBatcher(svc)
    app[LIMITS] = Limits(svc)
    app[AUDIT] = AuditBuffer(svc)
    app[WRAPPING_POOL] = WrappingPool(svc)
    add_routes(app)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        yield
        svc.executor.shutdown(wait=True)
        svc.queue.close()
        svc.db.dispose()

    app.cleanup_ctx.append(resources)
    app.cleanup_ctx.append(app[AUDIT].run)  # after resources: flushed before they close
    app.cleanup_ctx.append(app[WRAPPING_POOL].bindings.run)
    return app
