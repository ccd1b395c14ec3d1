"""Operations whose message ran out of retries end FAILED, with a code."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq

logger = logging.getLogger("kms.workers")


class OperationFailures(dramatiq.Middleware):
    """After the last retry, record the failure on the operation (never the exception text,
    which may carry details not meant for callers)."""

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        if exception is None or not message.failed:
            return
        from workers.engine import fail_after_retries  # late: engine imports the broker's actors

        try:
            fail_after_retries(message.actor_name, message.args, type(exception).__name__)
        except Exception:
            logger.exception("could not record the failure of message %s", message.message_id)
