"""The module `dramatiq` loads in each worker process (``kms worker``)."""

from __future__ import annotations

import os

from kms import logs
from workers.broker import setup_broker

broker = setup_broker()
if os.environ.get("KMS_BROKER") != "stub":  # worker processes: the service's log format
    logs.configure(
        (os.environ.get("KMS_LOG_FORMAT") or "text").lower(), os.environ.get("KMS_LOG_LEVEL") or "INFO"
    )

from workers import imports, keys, timers  # noqa: E402,F401  (declares the actors on the broker)
