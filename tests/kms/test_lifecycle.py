"""The lifecycle table (DESIGN §3): every row, every refusal, and a Hypothesis
state machine driving random command sequences against an independent model."""

from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kms.errors import InvalidKeyState, ManagedKeyReadOnly, NoActiveKeyMaterial, UnsupportedOperation
from kms.lifecycle import Command, KeyFacts, KeyState, MaterialState, created_state, plan
from kms.specs import Manager, Origin

S = KeyState
USER = [
    Command.ENABLE,
    Command.DISABLE,
    Command.SCHEDULE_DELETION,
    Command.CANCEL_DELETION,
    Command.IMPORT_MATERIAL,
    Command.DELETE_MATERIAL,
]

# The table of DESIGN §3, restated independently: (command, from) → to.
ALLOWED = {
    (Command.IMPORT_MATERIAL, S.PENDING_IMPORT): S.ACTIVE,
    (Command.IMPORT_MATERIAL, S.ACTIVE): S.ACTIVE,
    (Command.IMPORT_MATERIAL, S.DISABLED): S.DISABLED,
    (Command.DELETE_MATERIAL, S.ACTIVE): S.PENDING_IMPORT,
    (Command.DELETE_MATERIAL, S.DISABLED): S.PENDING_IMPORT,
    (Command.DISABLE, S.ACTIVE): S.DISABLED,
    (Command.DISABLE, S.DISABLED): S.DISABLED,
    (Command.ENABLE, S.DISABLED): S.ACTIVE,
    (Command.ENABLE, S.ACTIVE): S.ACTIVE,
    (Command.SCHEDULE_DELETION, S.ACTIVE): S.PENDING_DELETION,
    (Command.SCHEDULE_DELETION, S.DISABLED): S.PENDING_DELETION,
    (Command.SCHEDULE_DELETION, S.PENDING_IMPORT): S.PENDING_DELETION,
    (Command.SCHEDULE_DELETION, S.FAILED): S.PENDING_DELETION,
    (Command.CANCEL_DELETION, S.PENDING_DELETION): S.DISABLED,
}


@pytest.mark.parametrize("command", USER)
@pytest.mark.parametrize("state", list(S))
def test_every_cell_of_the_table(command: Command, state: KeyState) -> None:
    facts = KeyFacts(state=state, origin=Origin.EXTERNAL, material=MaterialState.ACTIVE)
    expected = ALLOWED.get((command, state))
    if expected is None:
        with pytest.raises(InvalidKeyState) as info:
            plan(command, facts, "k1")
        assert info.value.http_status == 409 and "k1" in info.value.message
    else:
        assert plan(command, facts, "k1") is expected


def test_created_states() -> None:
    assert created_state(Origin.VNGCLOUD) is S.ACTIVE
    assert created_state(Origin.EXTERNAL) is S.PENDING_IMPORT


def test_enable_without_material() -> None:
    with pytest.raises(NoActiveKeyMaterial):
        plan(Command.ENABLE, KeyFacts(S.DISABLED, Origin.EXTERNAL, material=MaterialState.EXPIRED))


@pytest.mark.parametrize("command", [Command.IMPORT_MATERIAL, Command.DELETE_MATERIAL])
def test_material_commands_need_external_origin(command: Command) -> None:
    with pytest.raises(UnsupportedOperation):
        plan(command, KeyFacts(S.ACTIVE, Origin.VNGCLOUD))


@pytest.mark.parametrize("command", USER)
def test_managed_keys_are_read_only(command: Command) -> None:
    with pytest.raises(ManagedKeyReadOnly):
        plan(command, KeyFacts(S.ACTIVE, manager=Manager.VNGCLOUD))


def test_expiry_in_pending_deletion_keeps_state() -> None:
    assert plan(Command.EXPIRE_MATERIAL, KeyFacts(S.PENDING_DELETION, Origin.EXTERNAL)) is S.PENDING_DELETION
    assert plan(Command.EXPIRE_MATERIAL, KeyFacts(S.ACTIVE, Origin.EXTERNAL)) is S.PENDING_IMPORT
    # timers are no-ops, not errors, where they do not apply
    assert plan(Command.EXPIRE_MATERIAL, KeyFacts(S.PENDING_IMPORT, Origin.EXTERNAL)) is S.PENDING_IMPORT


class LifecycleMachine(RuleBasedStateMachine):
    """Random command sequences; the model tracks state and material by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.origin = Origin.EXTERNAL
        self.state: KeyState | None = None
        self.material = MaterialState.NONE

    def facts(self) -> KeyFacts:
        assert self.state is not None
        return KeyFacts(self.state, self.origin, Manager.CUSTOMER, self.material)

    @precondition(lambda self: self.state is None)
    @rule(origin=st.sampled_from(list(Origin)))
    def create(self, origin: Origin) -> None:
        self.origin = origin
        self.state = created_state(origin)
        self.material = MaterialState.ACTIVE if origin is Origin.VNGCLOUD else MaterialState.NONE

    @precondition(lambda self: self.state is not None)
    @rule(command=st.sampled_from(USER))
    def command(self, command: Command) -> None:
        before = self.facts()
        try:
            after = plan(command, before, "k")
        except (InvalidKeyState, NoActiveKeyMaterial, UnsupportedOperation) as exc:
            # refused: the model must agree it is not allowed
            if isinstance(exc, UnsupportedOperation):
                assert self.origin is Origin.VNGCLOUD
            elif isinstance(exc, NoActiveKeyMaterial):
                assert command is Command.ENABLE and self.material is not MaterialState.ACTIVE
            else:
                assert (command, before.state) not in ALLOWED
            return
        assert ALLOWED[(command, before.state)] is after
        self.state = after
        if command is Command.IMPORT_MATERIAL:
            self.material = MaterialState.ACTIVE
        elif command is Command.DELETE_MATERIAL:
            self.material = MaterialState.DELETED

    @precondition(lambda self: self.state is not None and self.origin is Origin.EXTERNAL)
    @rule()
    def expire(self) -> None:
        before = self.facts()
        after = plan(Command.EXPIRE_MATERIAL, before, "k")
        if before.state in (S.ACTIVE, S.DISABLED):
            assert after is S.PENDING_IMPORT
            self.material = MaterialState.EXPIRED
        elif before.state is S.PENDING_DELETION:
            assert after is S.PENDING_DELETION
            self.material = MaterialState.EXPIRED
        else:
            assert after is before.state
        self.state = after

    @invariant()
    def active_keys_have_material(self) -> None:
        if self.state is S.ACTIVE:
            assert self.material is MaterialState.ACTIVE

    @invariant()
    def pending_import_only_for_external(self) -> None:
        if self.state is S.PENDING_IMPORT:
            assert self.origin is Origin.EXTERNAL


TestLifecycleMachine = LifecycleMachine.TestCase
