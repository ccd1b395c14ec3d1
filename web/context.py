"""What handlers share: typed application keys and the services behind them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from aiohttp import web

from kms.clock import Clock
from kms.crypto.envelope import RootKeyring
from kms.settings import Settings
from models.db import Database
from web.queue import Enqueuer

T = TypeVar("T")


@dataclass
class Services:
    settings: Settings
    db: Database
    keyring: RootKeyring
    clock: Clock
    queue: Enqueuer
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(8, "kms-db"))

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run blocking database/Redis work off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)


SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]
