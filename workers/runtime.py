"""Per-process resources of a worker or scheduler, built lazily after fork."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from kms.clock import Clock, SystemClock
from kms.crypto.envelope import RootKeyring
from kms.settings import Settings
from models.db import Database


@dataclass
class Runtime:
    settings: Settings
    db: Database
    keyring: RootKeyring
    clock: Clock


_lock = threading.Lock()
_runtime: Runtime | None = None


def runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        with _lock:
            if _runtime is None:
                settings = Settings.from_env()
                _runtime = Runtime(
                    settings=settings,
                    db=Database(settings.database_url),
                    keyring=settings.load_root_keyring(allow_generate=False),
                    clock=SystemClock(),
                )
    return _runtime


def install(rt: Runtime | None) -> None:
    """Tests install a runtime (injected clock, test database); None resets."""
    global _runtime
    with _lock:
        _runtime = rt
