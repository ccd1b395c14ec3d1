"""Wrapping key pairs reserved by this web process, handed out without a database write.

import-parameters must answer at once (DESIGN §5): the process reserves pooled
pairs in groups (one transaction per group), hands each out to one key with an
import token (the token binds the key, the pair, the algorithm and the expiry),
and records the bindings in bulk every half second. A reservation is dropped
after half a (scaled) day unused; the scheduler destroys pairs never bound two
days after their reservation (a process that stopped before recording them).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from datetime import datetime

from kms.commands import ROUTE_POOL
from models import repo
from web.buffered import BufferedWriter
from web.context import Services

RESERVE_GROUP = 32


class WrappingPool:
    def __init__(self, svc: Services) -> None:
        self._svc = svc
        self._reserved: dict[str, deque[tuple[float, str, str]]] = {}
        self._lock = threading.Lock()
        #: which key each handed-out pair went to (written in bulk; its ``run`` is the cleanup_ctx)
        self.bindings = BufferedWriter(svc, repo.bind_wrapping_keys, "wrapping key bindings")

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
        self.bindings.add({"id": pair_id, "key_id": key_id, "expires_at": expires_at})
