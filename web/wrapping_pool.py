"""Wrapping key pairs reserved by this web process, handed out without a database write.

import-parameters must answer at once (DESIGN §5): the process reserves pooled
pairs in groups (one transaction per group), hands each out to one key with an
import token (the token binds the key, the pair, the algorithm and the expiry),
and records the bindings in bulk every half second. A reservation is dropped
after half a (scaled) day unused; the scheduler destroys pairs never bound two
days after their reservation (a process that stopped before recording them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from aiohttp import web

from kms.commands import ROUTE_POOL
from models import repo
from web.context import Services

logger = logging.getLogger("kms.web")

RESERVE_GROUP = 32
FLUSH_INTERVAL_S = 0.5


class WrappingPool:
    def __init__(self, svc: Services) -> None:
        self._svc = svc
        self._reserved: dict[str, deque[tuple[float, str, str]]] = {}
        self._bindings: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def take(self, spec: str) -> tuple[str, str] | None:
        """(pair id, public PEM) for one import, or None when the pool is empty (blocking)."""
        max_age = self._svc.settings.day_s / 2
        now = time.monotonic()
        with self._lock:
            reserved = self._reserved.setdefault(spec, deque())
            while reserved and now - reserved[0][0] > max_age:
                reserved.popleft()
            if reserved:
                _, pair_id, pem = reserved.popleft()
                return pair_id, pem
        with self._svc.db.write() as s:
            rows = repo.reserve_wrapping_keys(
                s, spec, RESERVE_GROUP, now=self._svc.clock.now(), skip_locked=not self._svc.db.is_sqlite
            )
            left = repo.pool_size(s, spec)
        if left < max(1, self._svc.settings.wrapping_pool_size // 2):
            self._svc.queue.send(ROUTE_POOL, spec)  # top the pool up again
        if not rows:
            return None
        with self._lock:
            self._reserved.setdefault(spec, deque()).extend((now, i, pem) for i, pem in rows[1:])
        return rows[0]

    def bind(self, pair_id: str, key_id: str, expires_at: datetime) -> None:
        with self._lock:
            self._bindings.append({"id": pair_id, "key_id": key_id, "expires_at": expires_at})

    def flush(self) -> int:
        with self._lock:
            bindings, self._bindings = self._bindings, []
        if not bindings:
            return 0
        try:
            with self._svc.db.write() as s:
                repo.bind_wrapping_keys(s, bindings)
        except Exception:
            with self._lock:
                self._bindings = bindings + self._bindings
            raise
        return len(bindings)

    async def run(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: record bindings periodically and on shutdown."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(FLUSH_INTERVAL_S)
                try:
                    await self._svc.run(self.flush)
                except Exception as exc:
                    logger.warning(
                        "recording wrapping key bindings failed (%s); will retry", type(exc).__name__
                    )

        task = asyncio.get_running_loop().create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        try:
            await self._svc.run(self.flush)
        except Exception as exc:
            logger.error("could not record the last wrapping key bindings (%s)", type(exc).__name__)
