"""Group commit for accepted commands.

Requests hand their submission to the batcher and wait; while one batch is
being written (one transaction, one round of enqueues), the next one gathers.
Under load many commands share a transaction; alone, a request waits for no one.
"""

from __future__ import annotations

import asyncio

from kms.errors import KmsError
from web.commands import Accepted, Submission, accept_many
from web.context import Services

MAX_BATCH = 250


class AcceptBatcher:
    def __init__(self, svc: Services) -> None:
        self._svc = svc
        self._pending: list[tuple[Submission, asyncio.Future[Accepted]]] = []
        self._running = False

    async def submit(self, submission: Submission) -> Accepted:
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._pending.append((submission, future))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._write())
        return await future

    async def _write(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                subs = [sub for sub, _ in batch]
                try:
                    results: list[Accepted | KmsError] = await self._svc.run(accept_many, self._svc, subs)
                except Exception as exc:  # the whole batch failed (database down, …)
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, KmsError):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._running = False
