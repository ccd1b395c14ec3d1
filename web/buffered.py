"""Rows gathered from many requests and written together, every half second.

Hot paths (every use of a key, every import-parameters call) must not pay a
transaction each; they add a row here instead. Rows that could not be written
(database down) are kept for the next try, up to a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from sqlmodel import Session

from web.context import Services

logger = logging.getLogger("kms.web")

FLUSH_INTERVAL_S = 0.5
MAX_PENDING = 200_000


class BufferedWriter:
    def __init__(
        self, svc: Services, write: Callable[[Session, list[dict[str, Any]]], None], what: str
    ) -> None:
        self._svc = svc
        self._write = write
        self._what = what
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, row: dict[str, Any]) -> None:
        with self._lock:
            if len(self._rows) < MAX_PENDING:
                self._rows.append(row)

    def flush(self) -> int:
        """Blocking: write what was gathered, in one transaction."""
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return 0
        try:
            with self._svc.db.write() as s:
                self._write(s, rows)
        except Exception:
            with self._lock:
                self._rows = (rows + self._rows)[:MAX_PENDING]
            raise
        return len(rows)

    async def run(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: flush periodically, and what is left on shutdown."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(FLUSH_INTERVAL_S)
                try:
                    await self._svc.run(self.flush)
                except Exception as exc:
                    logger.warning("writing %s failed (%s); will retry", self._what, type(exc).__name__)

        task = asyncio.get_running_loop().create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        try:
            await self._svc.run(self.flush)
        except Exception as exc:
            logger.error("could not write the last %s (%s)", self._what, type(exc).__name__)
