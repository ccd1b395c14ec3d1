"""Audit events of key use (encrypt, sign, …), written in bulk.

Every use records an event; a web process gathers them and writes them every
half second in one insert (web.buffered), so auditing costs the hot path no
transaction. What is left is written when the process stops.
"""

from __future__ import annotations

from typing import Any

from models import repo
from web.buffered import BufferedWriter
from web.context import Services


class AuditBuffer(BufferedWriter):
    def __init__(self, svc: Services) -> None:
        super().__init__(svc, repo.add_audit_rows, "audit events")
        self._clock = svc.clock

    def record(self, **event: Any) -> None:
        self.add(
            {
                "at": self._clock.now(),
                "token_id": None,
                "role": None,
                "key_id": None,
                "request_id": None,
                "operation_id": None,
                **event,
            }
        )
