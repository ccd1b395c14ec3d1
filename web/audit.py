"""Audit events of key use (encrypt, sign, …), written in bulk.

Every use records an event; a web process gathers them and writes them every
half second in one insert, so auditing costs the hot path no transaction. The
last half second is written when the process stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from models import repo
from web.context import Services

logger = logging.getLogger("kms.web")

FLUSH_INTERVAL_S = 0.5
MAX_PENDING = 200_000


class AuditBuffer:
    def __init__(self, svc: Services) -> None:
        self._svc = svc
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(self, **event: Any) -> None:
        row = {
            "at": self._svc.clock.now(),
            "token_id": None,
            "role": None,
            "key_id": None,
            "request_id": None,
            "operation_id": None,
            **event,
        }
        with self._lock:
            if len(self._rows) < MAX_PENDING:
                self._rows.append(row)

    def flush(self) -> int:
        """Blocking: write what was gathered (kept for the next try if the database is down)."""
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return 0
        try:
            with self._svc.db.write() as s:
                repo.add_audit_rows(s, rows)
        except Exception:
            with self._lock:
                self._rows = rows + self._rows
            raise
        return len(rows)

    async def run(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: flush periodically; flush the rest on shutdown."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(FLUSH_INTERVAL_S)
                try:
                    await self._svc.run(self.flush)
                except Exception as exc:
                    logger.warning("audit flush failed (%s); will retry", type(exc).__name__)

        task = asyncio.get_running_loop().create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        try:
            await self._svc.run(self.flush)
        except Exception as exc:
            logger.error("could not write the last audit events (%s)", type(exc).__name__)
