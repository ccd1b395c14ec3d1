"""Ops endpoints: queue depths with workers stopped, dead letters listed without
secrets, requeued after the fault is fixed, deleted with a reason; admin only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import dramatiq
import pytest

from kms.crypto.envelope import hash_token, new_api_token
from models import repo
from workers import engine
from workers.keys import create_key


class Idle:
    def __init__(self, client: Any, broker: Any, admin: str, member: str) -> None:
        self.client, self.broker, self.admin, self.member = client, broker, admin, member

    async def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token or self.admin}"}
        resp = await self.client.request(method, path, headers=headers, **kw)
        return resp.status, await resp.json()


@pytest.fixture
async def idle(aiohttp_client: Any, rt: Any, stub_broker: Any) -> AsyncIterator[Idle]:
    """The app with no worker running: accepted work stays queued."""
    from models.db import Database
    from web.app import create_app
    from web.context import Services
    from web.queue import Enqueuer

    client = await aiohttp_client(
        create_app(
            Services(
                settings=rt.settings,
                db=Database(rt.settings.database_url),
                keyring=rt.keyring,
                clock=rt.clock,
                queue=Enqueuer(stub_broker),
            )
        )
    )
    tokens = {}
    for role in ("admin", "member"):
        tokens[role] = new_api_token()
        with rt.db.write() as s:
            repo.add_token(
                s, project="ops", role=role, token_hash=hash_token(tokens[role]), now=rt.clock.now()
            )
    yield Idle(client, stub_broker, tokens["admin"], tokens["member"])


def run_worker(broker: Any) -> None:
    worker = dramatiq.Worker(broker, worker_timeout=20, worker_threads=2)
    worker.start()
    try:
        for queue in sorted(broker.get_declared_queues()):
            broker.join(queue, timeout=30_000, fail_fast=False)
    finally:
        worker.stop()


async def test_queue_depth_with_workers_stopped(idle: Idle) -> None:
    ops = [{"command": "create_key", "params": {"name": f"q{i}", "key_spec": "AES_256"}} for i in range(500)]
    status, answer = await idle.call("POST", "/v1/batches", idle.member, json={"operations": ops})
    assert status == 202 and answer["batch"]["accepted"] == 500
    status, view = await idle.call("GET", "/v1/ops/queues")
    assert status == 200
    create = next(q for q in view["queues"] if q["name"] == "create")
    assert create["ready"] == 500 and create["oldest_ready_age_s"] is not None
    assert create["messages"]["ready"] >= 1  # fast creations share messages (one per hundred)
    assert {q["name"] for q in view["queues"]} >= {
        "create",
        "keygen",
        "commands",
        "timers",
        "imports",
        "pool",
    }
    assert view["timers"] == {"pending_deletions": 0, "material_expiries": 0, "next_deadline": None}


async def test_admin_only(idle: Idle) -> None:
    for method, path in [
        ("GET", "/v1/ops/queues"),
        ("GET", "/v1/ops/dead-letters"),
        ("GET", "/v1/ops/batches"),
        ("POST", "/v1/ops/dead-letters/x/requeue"),
        ("DELETE", "/v1/ops/dead-letters/x"),
    ]:
        status, err = await idle.call(method, path, idle.member)
        assert status == 403 and err["error"]["code"] == "Forbidden", path
    resp = await idle.client.get("/v1/ops/queues")
    assert resp.status == 401


async def _poisoned(idle: Idle, monkeypatch: Any) -> tuple[str, str]:
    """A create whose actor fails permanently (the fault: bulk creation raises)."""
    status, answer = await idle.call(
        "POST", "/v1/keys", idle.member, json={"name": "p", "key_spec": "AES_256"}
    )
    assert status == 202
    idle.broker.flush_all()  # drop the normal message; send one that is not retried
    monkeypatch.setattr(engine, "create_in_bulk", _fault)
    create_key.send_with_options(args=(answer["operation"]["id"],), max_retries=0)
    run_worker(idle.broker)
    return answer["operation"]["id"], answer["key"]["id"]


def _fault(*_: Any) -> Any:
    raise RuntimeError("the disk is on fire")


async def test_dead_letter_requeue_after_fix(idle: Idle, monkeypatch: Any) -> None:
    op_id, key_id = await _poisoned(idle, monkeypatch)
    status, op = await idle.call("GET", f"/v1/operations/{op_id}", idle.member)
    assert op["status"] == "FAILED" and op["error"]["code"] == "InternalError"
    assert "disk" not in op["error"]["message"]  # exception text is not shown to callers
    status, listing = await idle.call("GET", "/v1/ops/dead-letters")
    assert status == 200 and len(listing["dead_letters"]) == 1
    letter = listing["dead_letters"][0]
    assert letter["operation_id"] == op_id and letter["key_id"] == key_id and letter["actor"] == "create_key"
    assert (
        letter["queue"] == "create"
        and letter["error"]["code"] == "InternalError"
        and letter["failed_at"] is None
    )
    status, view = await idle.call("GET", "/v1/ops/queues")
    assert next(q for q in view["queues"] if q["name"] == "create")["dead_lettered"] == 1
    monkeypatch.undo()  # the fault is fixed
    status, done = await idle.call("POST", f"/v1/ops/dead-letters/{letter['message_id']}/requeue")
    assert status == 200 and done["operation_id"] == op_id
    status, op = await idle.call("GET", f"/v1/operations/{op_id}", idle.member)
    assert op["status"] == "QUEUED"
    run_worker(idle.broker)
    status, op = await idle.call("GET", f"/v1/operations/{op_id}", idle.member)
    assert op["status"] == "SUCCEEDED"
    _, key = await idle.call("GET", f"/v1/keys/{key_id}", idle.member)
    assert key["state"] == "ACTIVE"
    status, listing = await idle.call("GET", "/v1/ops/dead-letters")
    assert listing["dead_letters"] == []
    status, err = await idle.call("POST", f"/v1/ops/dead-letters/{letter['message_id']}/requeue")
    assert status == 404


async def test_dead_letter_delete_records_the_reason(idle: Idle, monkeypatch: Any) -> None:
    op_id, _ = await _poisoned(idle, monkeypatch)
    _, listing = await idle.call("GET", "/v1/ops/dead-letters?queue=create")
    message_id = listing["dead_letters"][0]["message_id"]
    status, done = await idle.call(
        "DELETE", f"/v1/ops/dead-letters/{message_id}", json={"reason": "known bad"}
    )
    assert status == 200 and done["deleted"]
    _, op = await idle.call("GET", f"/v1/operations/{op_id}", idle.member)
    assert op["status"] == "FAILED" and "known bad" in op["error"]["message"]
    _, listing = await idle.call("GET", "/v1/ops/dead-letters")
    assert listing["dead_letters"] == []
