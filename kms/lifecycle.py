"""The key lifecycle of DESIGN §3, written once, as data.

web/ calls :func:`plan` to refuse at once what can be refused at once; workers/
call it again when they apply a command, against the state they have just read,
inside the same compare-and-set. Nothing else compares state strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from kms.errors import (
    InvalidKeyState,
    KmsError,
    ManagedKeyReadOnly,
    NoActiveKeyMaterial,
    UnsupportedOperation,
)
from kms.specs import Manager, Origin


class KeyState(StrEnum):
    CREATING = "CREATING"
    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"
    PENDING_IMPORT = "PENDING_IMPORT"
    PENDING_DELETION = "PENDING_DELETION"
    FAILED = "FAILED"


class MaterialState(StrEnum):
    NONE = "NONE"
    ACTIVE = "ACTIVE"
    EXPIRED = "EXPIRED"
    DELETED = "DELETED"


class Command(StrEnum):
    """Every change of a key's state. Values double as operation kinds."""

    CREATE_KEY = "create_key"
    IMPORT_MATERIAL = "import"
    DELETE_MATERIAL = "delete_material"
    EXPIRE_MATERIAL = "expire_material"
    DISABLE = "disable"
    ENABLE = "enable"
    SCHEDULE_DELETION = "schedule_deletion"
    CANCEL_DELETION = "cancel_deletion"
    DELETE_KEY = "delete_key"


S = KeyState

#: command → {from state: to state}. A state missing from a row is refused.
TRANSITIONS: dict[Command, dict[KeyState, KeyState]] = {
    Command.IMPORT_MATERIAL: {
        S.PENDING_IMPORT: S.ACTIVE,
        S.ACTIVE: S.ACTIVE,
        S.DISABLED: S.DISABLED,
    },
    Command.DELETE_MATERIAL: {S.ACTIVE: S.PENDING_IMPORT, S.DISABLED: S.PENDING_IMPORT},
    Command.EXPIRE_MATERIAL: {
        S.ACTIVE: S.PENDING_IMPORT,
        S.DISABLED: S.PENDING_IMPORT,
        S.PENDING_DELETION: S.PENDING_DELETION,
    },
    Command.DISABLE: {S.ACTIVE: S.DISABLED, S.DISABLED: S.DISABLED},
    Command.ENABLE: {S.DISABLED: S.ACTIVE, S.ACTIVE: S.ACTIVE},
    Command.SCHEDULE_DELETION: {
        S.ACTIVE: S.PENDING_DELETION,
        S.DISABLED: S.PENDING_DELETION,
        S.PENDING_IMPORT: S.PENDING_DELETION,
        S.FAILED: S.PENDING_DELETION,
    },
    Command.CANCEL_DELETION: {S.PENDING_DELETION: S.DISABLED},
}

#: Commands driven by timers: a state outside their row means "nothing to do"
#: (the deletion was cancelled, the material was re-imported), never an error.
TIMER_COMMANDS = frozenset({Command.EXPIRE_MATERIAL, Command.DELETE_KEY})

#: Commands a project may not apply to a provider-managed key.
CUSTOMER_ONLY = frozenset(
    {
        Command.IMPORT_MATERIAL,
        Command.DELETE_MATERIAL,
        Command.DISABLE,
        Command.ENABLE,
        Command.SCHEDULE_DELETION,
        Command.CANCEL_DELETION,
    }
)

#: Commands that need key material to be present after they apply.
NEEDS_ACTIVE_MATERIAL = frozenset({Command.ENABLE})

#: States in which a key may be used for cryptography.
USABLE_STATES = frozenset({S.ACTIVE})

_HINTS: dict[KeyState, str] = {
    S.CREATING: "wait until its creation finishes",
    S.PENDING_DELETION: "cancel the deletion first",
    S.PENDING_IMPORT: "import key material first",
    S.FAILED: "its creation failed; it can only be scheduled for deletion",
    S.DISABLED: "enable it first",
    S.ACTIVE: "it is already active",
}


@dataclass(frozen=True, slots=True)
class KeyFacts:
    """What the lifecycle needs to know about a key, and nothing more."""

    state: KeyState
    origin: Origin = Origin.VNGCLOUD
    manager: Manager = Manager.CUSTOMER
    material: MaterialState = MaterialState.ACTIVE


def created_state(origin: Origin) -> KeyState:
    """Where a successful creation lands: VNGCLOUD keys have material, EXTERNAL wait for it."""
    return S.ACTIVE if origin is Origin.VNGCLOUD else S.PENDING_IMPORT


def plan(command: Command, key: KeyFacts, key_id: str = "", *, by_project: bool = True) -> KeyState:
    """The state ``command`` leads ``key`` to, or the error that refuses it.

    Timer commands return the unchanged state when they have nothing to do.
    """
    if command is Command.DELETE_KEY:
        return key.state
    if by_project and command in CUSTOMER_ONLY and key.manager is Manager.VNGCLOUD:
        raise ManagedKeyReadOnly(
            f"key {key_id} is managed by a VNG Cloud service; a project can only read it"
        )
    if command in (Command.IMPORT_MATERIAL, Command.DELETE_MATERIAL) and key.origin is not Origin.EXTERNAL:
        raise UnsupportedOperation(
            f"key {key_id} has origin {key.origin}; key material can only be imported into "
            "(or deleted from) keys created with origin EXTERNAL"
        )
    row = TRANSITIONS[command]
    if key.state not in row:
        if command in TIMER_COMMANDS:
            return key.state
        raise refusal(command, key, key_id)
    if command in NEEDS_ACTIVE_MATERIAL and key.material is not MaterialState.ACTIVE:
        raise NoActiveKeyMaterial(
            f"key {key_id} has no active key material ({key.material}); import key material first"
        )
    return row[key.state]


def refusal(command: Command, key: KeyFacts, key_id: str = "") -> KmsError:
    hint = _HINTS.get(key.state, "")
    if command is Command.SCHEDULE_DELETION and key.state is S.PENDING_DELETION:
        hint = "its deletion is already scheduled; cancel it first to choose another date"
    elif command is Command.CANCEL_DELETION:
        hint = "only a key pending deletion can have its deletion cancelled"
    elif command is Command.DELETE_MATERIAL and key.state is S.PENDING_IMPORT:
        hint = "it has no key material to delete"
    return InvalidKeyState(f"key {key_id} is {key.state}; cannot {command.value.replace('_', ' ')}: {hint}")


def is_usable(state: KeyState) -> bool:
    return state in USABLE_STATES
