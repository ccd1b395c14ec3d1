"""Actors of the key lifecycle. Each takes an operation id and drains its key."""

from __future__ import annotations

import dramatiq

from kms.commands import ROUTE_COMMAND, ROUTE_CREATE, ROUTE_KEYGEN
from workers.engine import run_create, run_operation

MAX_RETRIES = 8
MIN_BACKOFF_MS = 200
MAX_BACKOFF_MS = 10_000


@dramatiq.actor(
    actor_name=ROUTE_CREATE.actor_name,
    queue_name=ROUTE_CREATE.queue.value,
    max_retries=MAX_RETRIES,
    min_backoff=MIN_BACKOFF_MS,
    max_backoff=MAX_BACKOFF_MS,
)
def create_key(operation_id: str) -> None:
    """Create an AES_256 key (material generated inline) or an EXTERNAL one,
    with the other queued creations in one transaction."""
    run_create(operation_id)


@dramatiq.actor(
    actor_name=ROUTE_KEYGEN.actor_name,
    queue_name=ROUTE_KEYGEN.queue.value,
    max_retries=MAX_RETRIES,
    min_backoff=MIN_BACKOFF_MS,
    max_backoff=MAX_BACKOFF_MS,
)
def generate_key(operation_id: str) -> None:
    """Create an RSA or EC key: the slow key generation has a queue of its own."""
    run_operation(operation_id)


@dramatiq.actor(
    actor_name=ROUTE_COMMAND.actor_name,
    queue_name=ROUTE_COMMAND.queue.value,
    max_retries=MAX_RETRIES,
    min_backoff=MIN_BACKOFF_MS,
    max_backoff=MAX_BACKOFF_MS,
)
def apply_key_command(operation_id: str) -> None:
    """Enable, disable, schedule or cancel deletion, delete material."""
    run_operation(operation_id)
