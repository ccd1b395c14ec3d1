"""The audit trail: state changes (from workers) and every use of a key; append-only."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from sqlalchemy import text


async def test_audit_trail(api: Any, rt: Any) -> None:
    key = await api.create_key()
    rt.clock.advance(0.01)  # the injected clock stands still otherwise
    await api.command(key["id"], "disable")
    rt.clock.advance(0.01)
    status, _ = await api.call("POST", f"/v1/keys/{key['id']}/encrypt", json={"plaintext": "aGk="})
    assert status == 409
    rt.clock.advance(0.01)
    await api.command(key["id"], "enable")
    rt.clock.advance(0.01)
    status, _ = await api.call(
        "POST", f"/v1/keys/{key['id']}/encrypt", json={"plaintext": base64.b64encode(b"hi").decode()}
    )
    assert status == 200
    from web.handlers.common import AUDIT

    api.client.app[AUDIT].flush()
    status, trail = await api.call("GET", f"/v1/audit?key_id={key['id']}")
    assert status == 200
    events = [(e["action"], e["outcome"]) for e in reversed(trail["events"])]
    assert events == [
        ("create_key", "SUCCEEDED"),
        ("disable", "SUCCEEDED"),
        ("encrypt", "FAILED:KeyDisabled"),
        ("enable", "SUCCEEDED"),
        ("encrypt", "SUCCEEDED"),
    ]
    use = trail["events"][0]
    assert use["role"] == "member" and use["token_id"] and use["request_id"] and use["project"] == "alpha"
    changed = trail["events"][1]
    assert changed["role"] == "member" and changed["operation_id"]
    _, only = await api.call("GET", f"/v1/audit?key_id={key['id']}&action=encrypt&limit=1")
    assert len(only["events"]) == 1 and only["next_cursor"]
    _, theirs = await api.call("GET", "/v1/audit", api.other)
    assert theirs["events"] == []


def test_audit_rows_are_append_only(rt: Any) -> None:
    from models import repo

    with rt.db.write() as s:
        repo.audit(s, now=rt.clock.now(), project="p", action="x", outcome="SUCCEEDED")
    for statement in ("UPDATE audit_events SET outcome = 'forged'", "DELETE FROM audit_events"):
        with pytest.raises(Exception, match="append-only"), rt.db.write() as s:
            s.execute(text(statement))
