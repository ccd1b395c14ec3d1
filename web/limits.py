"""Per-project rate limits and quotas (429 ``RateLimited`` with ``Retry-After``).

* Rate: a token bucket per project in each web process (KMS_RATE_LIMIT_RPS,
  KMS_RATE_LIMIT_BURST); a batch costs one token, like a single command.
* Quotas: keys per project (KMS_MAX_KEYS_PER_PROJECT) and operations in flight
  per project (KMS_MAX_IN_FLIGHT_PER_PROJECT), counted in the database at most
  once a second per project (indexed counts) plus what this process accepted since.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from kms.errors import RateLimited
from models import repo
from web.context import Services

COUNT_TTL_S = 1.0


class RateLimitedAfter(RateLimited):
    """RateLimited carrying the Retry-After the middleware sends."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class _Counts:
    keys: int
    in_flight: int
    at: float


class Limits:
    def __init__(self, svc: Services) -> None:
        self._svc = svc
        self._buckets: dict[str, _Bucket] = {}
        self._counts: dict[str, _Counts] = {}
        self._lock = threading.Lock()

    def take(self, project: str) -> None:
        """One request's worth of the project's rate, or RateLimited."""
        rate, burst = self._svc.settings.rate_limit_rps, self._svc.settings.rate_limit_burst
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.setdefault(project, _Bucket(burst, now))
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * rate)
            bucket.at = now
            if bucket.tokens < 1:
                wait = (1 - bucket.tokens) / rate
                raise RateLimitedAfter(
                    f"project {project} is over its rate limit of {rate:g} requests/s; retry after "
                    f"{max(1, math.ceil(wait))} s or send fewer, larger batches",
                    wait,
                )
            bucket.tokens -= 1

    def admit_cached(self, project: str, *, new_keys: int, new_operations: int) -> bool:
        """Quotas from this second's counts, without blocking; False: call :meth:`admit`."""
        with self._lock:
            counts = self._counts.get(project)
        if counts is None or counts.at + COUNT_TTL_S < time.monotonic():
            return False
        self._check(project, counts, new_keys, new_operations)
        return True

    def admit(self, project: str, *, new_keys: int, new_operations: int) -> None:
        """Quotas (blocking: reads the database at most once a second per project)."""
        now = time.monotonic()
        with self._lock:
            counts = self._counts.get(project)
        if counts is None or counts.at + COUNT_TTL_S < now:
            with self._svc.db.read() as s:
                counts = _Counts(repo.count_keys(s, project), repo.count_in_flight(s, project), now)
        self._check(project, counts, new_keys, new_operations)

    def _check(self, project: str, counts: _Counts, new_keys: int, new_operations: int) -> None:
        settings = self._svc.settings
        if counts.keys + new_keys > settings.max_keys_per_project:
            raise RateLimitedAfter(
                f"project {project} has {counts.keys} keys; the quota is {settings.max_keys_per_project}. "
                "Schedule unused keys for deletion, or ask for a larger quota",
                60,
            )
        if counts.in_flight + new_operations > settings.max_in_flight_per_project:
            raise RateLimitedAfter(
                f"project {project} has {counts.in_flight} operations in flight; the limit is "
                f"{settings.max_in_flight_per_project}. Wait for them to finish "
                "(poll the batch or operation)",
                5,
            )
        with self._lock:
            counts.keys += new_keys
            counts.in_flight += new_operations
            self._counts[project] = counts
