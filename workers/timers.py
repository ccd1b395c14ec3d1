"""Deadlines: really deleting keys and expiring imported material (DESIGN §4).

The deadline lives on the key row and in a ``timers`` row; this actor re-checks
both in one transaction, so a duplicate, early or stale message changes nothing.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import dramatiq

from kms.clock import as_utc
from kms.commands import ROUTE_TIMER, TimerKind
from kms.lifecycle import Command, KeyState, MaterialState, plan
from models import repo
from workers.engine import DrainResult, _apply_one, delay_until, send_timers
from workers.runtime import runtime

logger = logging.getLogger("kms.workers")

#: A message that arrives this close before its deadline waits for it; one that
#: arrives earlier belongs to an older schedule and is dropped (the sweep covers the rest).
EARLY_WINDOW_S = 5.0


@dramatiq.actor(
    actor_name=ROUTE_TIMER.actor_name,
    queue_name=ROUTE_TIMER.queue.value,
    max_retries=8,
    min_backoff=200,
    max_backoff=5_000,
)
def fire_timer(timer_id: int) -> None:
    rt = runtime()
    now = rt.clock.now()
    out = DrainResult()
    with rt.db.write() as s:
        timer = repo.get_timer(s, timer_id)
        if timer is None or timer.fired_at is not None:
            return
        due_at = as_utc(timer.due_at)
        if due_at > now:
            if due_at - now <= timedelta(seconds=EARLY_WINDOW_S):
                fire_timer.send_with_options(args=(timer_id,), delay=delay_until(now, due_at))
            return
        key = repo.find_key(s, timer.subject_id, for_update=True)
        # Commands accepted before the deadline (a cancel, say) go first.
        for op in repo.pending_operations(s, timer.subject_id):
            if as_utc(op.created_at) > due_at or key is None:
                break
            key = _apply_one(rt, s, key, op, now, None, out)
        if key is not None and timer.kind == TimerKind.DELETE_KEY:
            if (
                key.state == KeyState.PENDING_DELETION
                and key.deletion_date
                and as_utc(key.deletion_date) <= now
            ):
                repo.delete_key_row(s, key.id)
                repo.audit(
                    s, now=now, project=key.project, action="delete_key", outcome="SUCCEEDED", key_id=key.id
                )
                logger.info("key %s deleted at the end of its waiting period", key.id)
        elif key is not None and timer.kind == TimerKind.EXPIRE_MATERIAL:
            expires = key.material_expires_at
            if key.material_state == MaterialState.ACTIVE and expires and as_utc(expires) <= now:
                new_state = plan(Command.EXPIRE_MATERIAL, repo.key_facts(key), key.id)
                repo.destroy_material(s, key.id)
                repo.cas_update_key(
                    s, key, now, state=new_state.value, material_state=MaterialState.EXPIRED.value
                )
                repo.audit(
                    s,
                    now=now,
                    project=key.project,
                    action="expire_material",
                    outcome="SUCCEEDED",
                    key_id=key.id,
                )
        repo.finish_timer(s, timer_id)
    send_timers(rt, out.timers)
