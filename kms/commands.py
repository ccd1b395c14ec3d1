"""Command names, queues and actor names shared by web/ and workers/.

web/ enqueues by actor name (it never imports workers/); workers/ declare actors
with exactly these names and queues.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from kms.lifecycle import Command
from kms.specs import KeySpec, Origin


class Queue(StrEnum):
    CREATE = "create"  # fast creations (AES)
    KEYGEN = "keygen"  # slow creations (RSA/EC key generation)
    COMMANDS = "commands"  # enable, disable, deletion, material changes
    TIMERS = "timers"  # deadlines (deletion, material expiry)
    IMPORTS = "imports"  # unwrapping and checking imported material
    POOL = "pool"  # pre-generating wrapping key pairs


class OperationStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def is_final(self) -> bool:
        return self in (OperationStatus.SUCCEEDED, OperationStatus.FAILED)


class TimerKind(StrEnum):
    DELETE_KEY = "delete_key"
    EXPIRE_MATERIAL = "expire_material"


@dataclass(frozen=True)
class Route:
    actor_name: str
    queue: Queue


ROUTE_CREATE = Route("create_key", Queue.CREATE)
ROUTE_KEYGEN = Route("generate_key", Queue.KEYGEN)
ROUTE_COMMAND = Route("apply_key_command", Queue.COMMANDS)
ROUTE_TIMER = Route("fire_timer", Queue.TIMERS)
ROUTE_IMPORT = Route("import_material", Queue.IMPORTS)
ROUTE_POOL = Route("refill_wrapping_keys", Queue.POOL)

ALL_ROUTES = (ROUTE_CREATE, ROUTE_KEYGEN, ROUTE_COMMAND, ROUTE_TIMER, ROUTE_IMPORT, ROUTE_POOL)

#: Commands a caller may submit (others come from timers).
USER_COMMANDS = frozenset(
    {
        Command.CREATE_KEY,
        Command.ENABLE,
        Command.DISABLE,
        Command.SCHEDULE_DELETION,
        Command.CANCEL_DELETION,
        Command.DELETE_MATERIAL,
        Command.IMPORT_MATERIAL,
    }
)


def needs_keygen(kind: str, key_spec: str | None, origin: str | None) -> bool:
    """Creations that generate RSA/EC material here: slow, so they get their own queue."""
    return kind == Command.CREATE_KEY and key_spec != KeySpec.AES_256 and origin != Origin.EXTERNAL


def route_for(kind: str, key_spec: str | None = None, origin: str | None = None) -> Route:
    """Which actor carries out an operation of ``kind``."""
    if kind == Command.CREATE_KEY:
        return ROUTE_KEYGEN if needs_keygen(kind, key_spec, origin) else ROUTE_CREATE
    if kind == Command.IMPORT_MATERIAL:
        return ROUTE_IMPORT
    return ROUTE_COMMAND


#: The waiting period of a deletion, in (scaled) days (DESIGN §3).
MIN_PENDING_WINDOW_DAYS = 7
MAX_PENDING_WINDOW_DAYS = 30
DEFAULT_PENDING_WINDOW_DAYS = 30


#: Specs of wrapping key pairs kept pre-generated (import-parameters answers from the pool).
WRAPPING_KEY_SPECS = ("RSA_2048", "RSA_3072", "RSA_4096")
#: Longest material expiry accepted, in (scaled) days (DESIGN §6.6).
MAX_MATERIAL_EXPIRY_DAYS = 365
#: Validity of import parameters (wrapping key + token), in (scaled) days.
IMPORT_PARAMETERS_VALID_DAYS = 1


#: Fast creations (AES_256, EXTERNAL) are carried out in bulk: a worker pass takes
#: up to this many queued ones in one transaction (workers.engine.create_in_bulk).
BULK_CREATE_LIMIT = 200
#: Web sends one message per this many fast creations. It must stay below the pass
#: size: every message makes at least one pass, so the messages cover them all.
CREATIONS_PER_MESSAGE = BULK_CREATE_LIMIT // 2
