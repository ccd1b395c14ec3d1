"""Workers: acceptance order, idempotence under redelivery, leases, timers, sweeps.

Actors are called directly (as a redelivered message would call them) against
a real database, with an injected clock.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from kms.commands import OperationStatus, TimerKind, route_for
from kms.lifecycle import Command, KeyState
from models import repo
from models.tables import Key, Operation
from workers import engine
from workers.keys import apply_key_command, create_key, generate_key
from workers.scheduler import sweep_once
from workers.timers import fire_timer


def add_key(rt: Any, *, spec: str = "AES_256", origin: str = "VNGCLOUD", state: str = "CREATING") -> str:
    now = rt.clock.now()
    key_id = repo.new_id()
    with rt.db.write() as s:
        s.add(
            Key(
                id=key_id,
                project="p",
                name="k",
                description="",
                tags={},
                key_type="SYMMETRIC",
                key_spec=spec,
                key_usage="ENCRYPT_DECRYPT",
                origin=origin,
                manager="CUSTOMER",
                state=state,
                created_at=now,
                updated_at=now,
            )
        )
    return key_id


def add_op(rt: Any, key_id: str, kind: Command, **params: Any) -> str:
    now = rt.clock.now()
    op_id = repo.new_id()
    queue = route_for(kind, params.get("key_spec"), params.get("origin")).queue.value
    with rt.db.write() as s:
        s.add(
            Operation(
                id=op_id,
                project="p",
                kind=kind.value,
                queue=queue,
                key_id=key_id,
                params=params,
                created_at=now,
                sent_at=now,
            )
        )
    return op_id


def op_of(rt: Any, op_id: str) -> Operation:
    with rt.db.read() as s:
        op = repo.find_operation(s, op_id)
        assert op is not None
        return op


def key_of(rt: Any, key_id: str) -> Key | None:
    with rt.db.read() as s:
        return repo.find_key(s, key_id)


def test_create_then_commands_apply_in_acceptance_order(rt: Any, stub_broker: Any) -> None:
    kid = add_key(rt)
    create = add_op(rt, kid, Command.CREATE_KEY, key_spec="AES_256", origin="VNGCLOUD")
    disable = add_op(rt, kid, Command.DISABLE)
    enable = add_op(rt, kid, Command.ENABLE)
    disable2 = add_op(rt, kid, Command.DISABLE)
    # messages arrive in reverse order: the last command's message comes first
    for op_id in (disable2, enable, disable):
        apply_key_command.fn(op_id)
    assert all(op_of(rt, o).status == OperationStatus.SUCCEEDED for o in (create, disable, enable, disable2))
    seqs = [op_of(rt, o) for o in (create, disable, enable, disable2)]
    assert [o.finished_at for o in seqs] == sorted(o.finished_at for o in seqs)  # type: ignore[type-var]
    key = key_of(rt, kid)
    assert key is not None and key.state == KeyState.DISABLED
    # redelivery of every message changes nothing
    create_key.fn(create)
    for op_id in (disable, enable, disable2):
        apply_key_command.fn(op_id)
    again = key_of(rt, kid)
    assert again is not None and again.version == key.version
    assert op_of(rt, create).attempts == 1


def test_refused_command_fails_with_code_and_changes_nothing(rt: Any) -> None:
    kid = add_key(rt)
    create_key.fn(add_op(rt, kid, Command.CREATE_KEY, key_spec="AES_256", origin="VNGCLOUD"))
    before = key_of(rt, kid)
    cancel = add_op(rt, kid, Command.CANCEL_DELETION)
    apply_key_command.fn(cancel)
    op = op_of(rt, cancel)
    assert op.status == OperationStatus.FAILED and op.error_code == "InvalidKeyState"
    after = key_of(rt, kid)
    assert before is not None and after is not None
    assert (after.state, after.version) == (before.state, before.version)


def test_asymmetric_creation_claims_with_a_lease(rt: Any) -> None:
    kid = add_key(rt, spec="EC_P256")
    op_id = add_op(rt, kid, Command.CREATE_KEY, key_spec="EC_P256", origin="VNGCLOUD")
    # another worker holds the claim (it is generating)
    with rt.db.write() as s:
        assert repo.claim_operation(s, op_of(rt, op_id), rt.clock.now(), 30)
    generate_key.fn(op_id)
    assert op_of(rt, op_id).status == OperationStatus.RUNNING  # left to the holder
    # the holder died: after its lease the work is taken over
    rt.clock.advance(31)
    generate_key.fn(op_id)
    op = op_of(rt, op_id)
    assert op.status == OperationStatus.SUCCEEDED and op.attempts == 2
    key = key_of(rt, kid)
    assert key is not None and key.state == KeyState.ACTIVE and key.material_version == 1


def test_external_creation_has_no_material(rt: Any) -> None:
    kid = add_key(rt, spec="RSA_2048", origin="EXTERNAL")
    create_key.fn(add_op(rt, kid, Command.CREATE_KEY, key_spec="RSA_2048", origin="EXTERNAL"))
    key = key_of(rt, kid)
    assert key is not None and key.state == KeyState.PENDING_IMPORT and key.material_state == "NONE"
    with rt.db.read() as s:
        assert repo.load_material(s, kid, 1) is None


def test_retries_exhausted_fail_the_operation_and_the_key(rt: Any) -> None:
    kid = add_key(rt, spec="RSA_2048")
    op_id = add_op(rt, kid, Command.CREATE_KEY, key_spec="RSA_2048", origin="VNGCLOUD")
    engine.fail_after_retries("generate_key", (op_id,), "OSError")
    op = op_of(rt, op_id)
    assert op.status == OperationStatus.FAILED and op.error_code == "InternalError"
    assert "OSError" in (op.error_message or "")
    key = key_of(rt, kid)
    assert key is not None and key.state == KeyState.FAILED
    # a FAILED key can only be scheduled for deletion
    sched = add_op(rt, kid, Command.SCHEDULE_DELETION, pending_window_days=7)
    apply_key_command.fn(sched)
    assert op_of(rt, sched).status == OperationStatus.SUCCEEDED


def _schedule(rt: Any, kid: str, days: int = 7) -> None:
    apply_key_command.fn(add_op(rt, kid, Command.SCHEDULE_DELETION, pending_window_days=days))


def _active_key(rt: Any) -> str:
    kid = add_key(rt)
    create_key.fn(add_op(rt, kid, Command.CREATE_KEY, key_spec="AES_256", origin="VNGCLOUD"))
    return kid


def _timer_id(rt: Any, kid: str) -> int:
    with rt.db.read() as s:
        from sqlalchemy import select

        from models.tables import Timer

        timer = s.execute(select(Timer).where(Timer.subject_id == kid)).scalar_one()
        assert timer.id is not None
        return timer.id


def test_deletion_timer_never_early(rt: Any) -> None:
    kid = _active_key(rt)
    _schedule(rt, kid, 7)
    key = key_of(rt, kid)
    assert key is not None and key.state == KeyState.PENDING_DELETION
    timer_id = _timer_id(rt, kid)
    rt.clock.advance(6.9)
    fire_timer.fn(timer_id)
    assert key_of(rt, kid) is not None
    rt.clock.advance(0.2)
    fire_timer.fn(timer_id)
    assert key_of(rt, kid) is None
    with rt.db.read() as s:
        assert repo.load_material(s, kid, 1) is None
    fire_timer.fn(timer_id)  # duplicate: nothing to do


def test_cancel_accepted_before_deadline_wins(rt: Any) -> None:
    kid = _active_key(rt)
    _schedule(rt, kid, 7)
    timer_id = _timer_id(rt, kid)
    cancel = add_op(rt, kid, Command.CANCEL_DELETION)  # accepted, not yet run
    rt.clock.advance(8)
    fire_timer.fn(timer_id)
    key = key_of(rt, kid)
    assert key is not None and key.state == KeyState.DISABLED
    assert op_of(rt, cancel).status == OperationStatus.SUCCEEDED


def test_sweep_sends_timers_within_horizon_and_resends_lost_ones(rt: Any, stub_broker: Any) -> None:
    kid = _active_key(rt)
    _schedule(rt, kid, 7)  # 7 s > horizon (1 s): not sent yet
    assert sweep_once(rt).timers_sent == 0
    rt.clock.advance(6.5)
    assert sweep_once(rt).timers_sent == 1
    assert sweep_once(rt).timers_sent == 0  # sent once
    # the delayed message is lost (Redis flushed); past the grace it is sent again
    stub_broker.flush_all()
    rt.clock.advance(0.5 + rt.settings.timer_grace_s + 0.1)
    assert sweep_once(rt).timers_sent == 1
    fire_timer.fn(_timer_id(rt, kid))
    assert key_of(rt, kid) is None


def test_sweep_resends_lost_operations(rt: Any, stub_broker: Any) -> None:
    kid = add_key(rt)
    op_id = add_op(rt, kid, Command.CREATE_KEY, key_spec="AES_256", origin="VNGCLOUD")
    assert sweep_once(rt).operations_resent == 0  # just sent
    rt.clock.advance(rt.settings.requeue_after_s + 1)
    assert sweep_once(rt).operations_resent == 1
    assert stub_broker.queues["create"].qsize() == 1
    create_key.fn(op_id)
    assert op_of(rt, op_id).status == OperationStatus.SUCCEEDED


def test_sweep_waits_while_the_queue_is_busy(rt: Any, stub_broker: Any) -> None:
    kid = add_key(rt)
    add_op(rt, kid, Command.CREATE_KEY, key_spec="AES_256", origin="VNGCLOUD")
    create_key.send("someone-else's-message")  # the queue still holds work
    rt.clock.advance(rt.settings.requeue_after_s + 1)
    assert sweep_once(rt).operations_resent == 0


def test_material_expiry_timer(rt: Any) -> None:
    kid = add_key(rt, origin="EXTERNAL", state="ACTIVE")
    now = rt.clock.now()
    with rt.db.write() as s:
        key = repo.find_key(s, kid)
        assert key is not None
        repo.store_material(s, kid, 1, b"sealed", now)
        repo.cas_update_key(
            s,
            key,
            now,
            material_state="ACTIVE",
            material_version=1,
            material_expires_at=now + timedelta(seconds=3),
        )
        repo.set_timer(s, TimerKind.EXPIRE_MATERIAL.value, kid, now + timedelta(seconds=3))
    rt.clock.advance(3.1)
    fire_timer.fn(_timer_id(rt, kid))
    key2 = key_of(rt, kid)
    assert key2 is not None and key2.state == KeyState.PENDING_IMPORT and key2.material_state == "EXPIRED"
    with rt.db.read() as s:
        assert repo.load_material(s, kid, 1) is None


@pytest.mark.parametrize("n", [20])
def test_many_threads_one_key_keeps_order(rt: Any, stub_broker: Any, n: int) -> None:
    """Real worker threads on the stub broker: alternating commands end in the last one's state."""
    import dramatiq

    kid = _active_key(rt)
    ops = [add_op(rt, kid, Command.DISABLE if i % 2 == 0 else Command.ENABLE) for i in range(n)]
    for op_id in reversed(ops):
        apply_key_command.send(op_id)
    worker = dramatiq.Worker(stub_broker, worker_timeout=20, worker_threads=8)
    worker.start()
    try:
        stub_broker.join("commands", timeout=30_000)
    finally:
        worker.stop()
    finished = [op_of(rt, o) for o in ops]
    assert all(o.status == OperationStatus.SUCCEEDED for o in finished)
    assert [o.seq for o in sorted(finished, key=lambda o: (o.finished_at, o.seq))] == [
        o.seq for o in finished
    ]
    key = key_of(rt, kid)
    assert key is not None and key.state == (KeyState.DISABLED if (n - 1) % 2 == 0 else KeyState.ACTIVE)


def test_bulk_creation_covers_every_queued_creation(rt: Any, stub_broker: Any) -> None:
    """One message per batch of fast creations is enough: each message makes a
    bulk pass over the oldest queued ones, even if its own was already done."""
    from workers import engine as eng

    kids = [add_key(rt) for _ in range(7)]
    ops = [add_op(rt, kid, Command.CREATE_KEY, key_spec="AES_256", origin="VNGCLOUD") for kid in kids]
    limit = eng.BULK_CREATE_LIMIT
    eng.BULK_CREATE_LIMIT = 3
    try:
        create_key.fn(ops[0])  # passes of 3 until ops[0] is done: only the first pass needed
        assert [op_of(rt, o).status for o in ops].count(OperationStatus.SUCCEEDED) == 3
        create_key.fn(ops[0])  # its own op is done: still one pass over the next ones
        assert [op_of(rt, o).status for o in ops].count(OperationStatus.SUCCEEDED) == 6
        create_key.fn(ops[6])
    finally:
        eng.BULK_CREATE_LIMIT = limit
    assert all(op_of(rt, o).status == OperationStatus.SUCCEEDED for o in ops)
    for kid in kids:
        key = key_of(rt, kid)
        assert key is not None and key.state == KeyState.ACTIVE and key.material_version == 1


def test_bulk_creation_is_fair_between_projects(rt: Any) -> None:
    """A project's single create is taken in the next pass, however long another's backlog."""
    from workers import engine as eng

    big = [
        add_op(rt, add_key(rt), Command.CREATE_KEY, key_spec="AES_256", origin="VNGCLOUD") for _ in range(30)
    ]
    kid = add_key(rt)
    now = rt.clock.now()
    op_id = repo.new_id()
    with rt.db.write() as s:  # the other project's single create, accepted last
        s.add(
            Operation(
                id=op_id,
                project="other",
                kind="create_key",
                queue="create",
                key_id=kid,
                params={"key_spec": "AES_256", "origin": "VNGCLOUD"},
                created_at=now,
                sent_at=now,
            )
        )
    limit = eng.BULK_CREATE_LIMIT
    eng.BULK_CREATE_LIMIT = 10
    try:
        create_key.fn(big[0])  # one pass, triggered by the big project's first message
    finally:
        eng.BULK_CREATE_LIMIT = limit
    assert op_of(rt, op_id).status == OperationStatus.SUCCEEDED
    assert [op_of(rt, o).status for o in big].count(OperationStatus.SUCCEEDED) < 30


def test_messages_cover_every_fast_creation() -> None:
    """Web sends one message per CREATIONS_PER_MESSAGE fast creations; each makes a
    pass of up to BULK_CREATE_LIMIT, so the messages of a batch cover all of it."""
    from kms.commands import BULK_CREATE_LIMIT, CREATIONS_PER_MESSAGE

    assert 0 < CREATIONS_PER_MESSAGE <= BULK_CREATE_LIMIT
