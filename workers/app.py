"""The module `dramatiq` loads in each worker process (``kms worker``)."""

from __future__ import annotations

from workers.broker import setup_broker

broker = setup_broker()

from workers import imports, keys, timers  # noqa: E402,F401  (declares the actors on the broker)
