"""The scheduler loop (``kms scheduler``; several replicas are safe).

Each sweep (DESIGN §4):
* timers due within the horizon and never sent → a delayed message for the exact
  remaining time; timers overdue by more than the grace → sent again, undelayed
  (the delayed message was lost, e.g. Redis was flushed);
* operations accepted but apparently lost (QUEUED long after they were sent, or
  RUNNING past their lease because the worker died) → sent again.
Rows are claimed in the database (``SKIP LOCKED`` on PostgreSQL, ``BEGIN IMMEDIATE``
on SQLite), so replicas do not send the same row twice in one sweep.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from kms.clock import as_utc
from kms.commands import ROUTE_POOL, WRAPPING_KEY_SPECS, OperationStatus, route_for
from models import repo
from workers.engine import delay_until
from workers.runtime import Runtime, runtime

logger = logging.getLogger("kms.scheduler")

SWEEP_LIMIT = 1000
#: An operation this many requeue periods old is re-sent even if its queue is busy.
FORCE_RESEND_FACTOR = 10


@dataclass
class SweepReport:
    timers_sent: int = 0
    operations_resent: int = 0
    wrapping_keys_destroyed: int = 0
    pools_refilled: int = 0


def _maintain_wrapping_keys(rt: Runtime, broker: dramatiq.Broker, now: datetime) -> tuple[int, int]:
    """Destroy wrapping key pairs past their validity; top up the pools of specs in use."""
    with rt.db.write() as s:
        destroyed = repo.destroy_expired_wrapping_keys(
            s, now, unbound_before=now - timedelta(seconds=2 * rt.settings.day_s)
        )
    refills = 0
    if ready_count(broker, ROUTE_POOL.queue) == 0:
        with rt.db.read() as s:
            target = rt.settings.wrapping_pool_size
            low = [
                spec
                for spec in WRAPPING_KEY_SPECS
                if repo.pool_in_use(s, spec) and repo.pool_size(s, spec) < target
            ]
        for spec in low:
            broker.get_actor(ROUTE_POOL.actor_name).send(spec)
            refills += 1
    return destroyed, refills


def ready_count(broker: dramatiq.Broker, queue: str) -> int:
    """Messages waiting on ``queue`` (cheap: one LLEN)."""
    if isinstance(broker, RedisBroker):
        return int(broker.client.llen(f"{broker.namespace}:{queue}"))
    if isinstance(broker, StubBroker):
        return broker.queues[queue].qsize() if queue in broker.queues else 0
    return 0


def sweep_once(rt: Runtime | None = None) -> SweepReport:
    rt = rt or runtime()
    broker = dramatiq.get_broker()
    report = SweepReport()
    settings = rt.settings
    now = rt.clock.now()
    skip_locked = not rt.db.is_sqlite

    with rt.db.write() as s:
        timers = repo.claim_due_timers(
            s,
            now,
            horizon_s=settings.timer_horizon_s,
            grace_s=settings.timer_grace_s,
            limit=SWEEP_LIMIT,
            skip_locked=skip_locked,
        )
    fire = broker.get_actor("fire_timer")
    for timer in timers:
        assert timer.id is not None
        fire.send_with_options(args=(timer.id,), delay=delay_until(now, timer.due_at))
        report.timers_sent += 1

    with rt.db.write() as s:
        stale = repo.claim_stale_operations(
            s, now, requeue_after_s=settings.requeue_after_s, limit=SWEEP_LIMIT, skip_locked=skip_locked
        )
    busy: dict[str, int] = {}
    force_before = now - timedelta(seconds=settings.requeue_after_s * FORCE_RESEND_FACTOR)
    for op in stale:
        params = op.params or {}
        route = route_for(op.kind, params.get("key_spec"), params.get("origin"))
        if op.status == OperationStatus.QUEUED and as_utc(op.created_at) > force_before:
            # A long backlog is not a lost message: wait while the queue still holds work.
            if route.queue not in busy:
                busy[route.queue] = ready_count(broker, route.queue)
            if busy[route.queue] > 0:
                continue
        broker.get_actor(route.actor_name).send_with_options(args=(op.id,))
        report.operations_resent += 1
    report.wrapping_keys_destroyed, report.pools_refilled = _maintain_wrapping_keys(rt, broker, now)
    if report.timers_sent or report.operations_resent:
        logger.info(
            "sweep: %d timers sent, %d operations re-sent", report.timers_sent, report.operations_resent
        )
    return report


def run_forever(stop: threading.Event, rt: Runtime | None = None) -> None:
    rt = rt or runtime()
    logger.info("scheduler started (sweep every %.1fs)", rt.settings.sweep_interval_s)
    while not stop.is_set():
        try:
            sweep_once(rt)
        except Exception as exc:  # keep sweeping through database/Redis outages
            logger.warning("sweep failed (%s); retrying next interval", type(exc).__name__)
        stop.wait(rt.settings.sweep_interval_s)
    logger.info("scheduler stopped")
