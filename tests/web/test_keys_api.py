"""The key lifecycle through the HTTP API, with the stub broker and a worker thread."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from workers.scheduler import sweep_once


async def test_create_aes_key_becomes_active(api: Any) -> None:
    status, answer = await api.call(
        "POST", "/v1/keys", json={"name": "orders", "key_spec": "AES_256", "tags": {"team": "billing"}}
    )
    assert status == 202
    assert answer["key"]["state"] == "CREATING"
    assert answer["operation"]["status"] == "QUEUED"
    await api.settle()
    _, key = await api.call("GET", f"/v1/keys/{answer['key']['id']}")
    assert key["state"] == "ACTIVE"
    assert key["material"]["state"] == "ACTIVE"
    assert key["key_usage"] == "ENCRYPT_DECRYPT" and key["key_type"] == "SYMMETRIC"
    assert key["tags"] == {"team": "billing"}
    _, op = await api.call("GET", f"/v1/operations/{answer['operation']['id']}")
    assert op["status"] == "SUCCEEDED" and op["attempts"] == 1 and op["finished_at"]


@pytest.mark.parametrize(
    "spec,usage", [("RSA_2048", "SIGN_VERIFY"), ("EC_P256", "SIGN_VERIFY"), ("RSA_2048", "ENCRYPT_DECRYPT")]
)
async def test_create_asymmetric_key(api: Any, spec: str, usage: str) -> None:
    key = await api.create_key(key_spec=spec, key_usage=usage)
    assert key["state"] == "ACTIVE" and key["key_type"] == "ASYMMETRIC" and key["key_usage"] == usage


async def test_external_key_waits_for_import(api: Any) -> None:
    key = await api.create_key(origin="EXTERNAL")
    assert key["state"] == "PENDING_IMPORT"
    assert key["material"]["state"] == "NONE"
    status, err = await api.command(key["id"], "enable")
    assert status == 409 and err["error"]["code"] == "InvalidKeyState"


async def test_prefer_wait_returns_finished_operation(api: Any) -> None:
    status, answer = await api.call(
        "POST", "/v1/keys", json={"name": "w", "key_spec": "AES_256"}, headers={"Prefer": "wait=10"}
    )
    assert status == 200, answer
    assert answer["operation"]["status"] == "SUCCEEDED"
    assert answer["key"]["state"] == "ACTIVE"


async def test_full_lifecycle_with_deletion(api: Any, rt: Any) -> None:
    key = await api.create_key()
    kid = key["id"]
    status, op = await api.command(kid, "disable")
    assert (status, op["status"]) == (202, "SUCCEEDED")
    _, key = await api.call("GET", f"/v1/keys/{kid}")
    assert key["state"] == "DISABLED"
    _, op = await api.command(kid, "enable")
    assert op["status"] == "SUCCEEDED"
    _, op = await api.command(kid, "schedule-deletion", pending_window_days=7)
    assert op["status"] == "SUCCEEDED"
    _, key = await api.call("GET", f"/v1/keys/{kid}")
    assert key["state"] == "PENDING_DELETION" and key["pending_window_days"] == 7
    _, op = await api.command(kid, "cancel-deletion")
    _, key = await api.call("GET", f"/v1/keys/{kid}")
    assert key["state"] == "DISABLED" and key["deletion_date"] is None
    # cancelled: the timer is gone, nothing happens after the old deadline
    rt.clock.advance(8)
    sweep_once(rt)
    await api.settle()
    _, key = await api.call("GET", f"/v1/keys/{kid}")
    assert key["state"] == "DISABLED"
    _, op = await api.command(kid, "schedule-deletion", pending_window_days=7)
    rt.clock.advance(6.5)
    assert sweep_once(rt).timers_sent == 1  # within the horizon: a delayed message goes out
    await asyncio.sleep(1.0)  # it fires (real time), finds the (fake) deadline not reached, waits again
    status, _ = await api.call("GET", f"/v1/keys/{kid}")
    assert status == 200, "deleted early"
    rt.clock.advance(1)
    await api.settle()
    status, err = await api.call("GET", f"/v1/keys/{kid}")
    assert status == 404 and err["error"]["code"] == "NotFound"
    # the operations outlive their key
    status, ops = await api.call("GET", f"/v1/operations?key_id={kid}")
    assert status == 200 and len(ops["operations"]) == 6


REFUSALS = [
    # (setup commands, refused command, body, code, http)
    ([], "cancel-deletion", None, "InvalidKeyState", 409),
    (
        [("schedule-deletion", {"pending_window_days": 7})],
        "schedule-deletion",
        {"pending_window_days": 7},
        "InvalidKeyState",
        409,
    ),
    ([("schedule-deletion", {"pending_window_days": 7})], "enable", None, "InvalidKeyState", 409),
    ([("schedule-deletion", {"pending_window_days": 7})], "disable", None, "InvalidKeyState", 409),
    ([], "schedule-deletion", {"pending_window_days": 6}, "ValidationError", 400),
    ([], "schedule-deletion", {"pending_window_days": 31}, "ValidationError", 400),
    ([], "schedule-deletion", {"pending_window_days": "7"}, "ValidationError", 400),
]


@pytest.mark.parametrize("setup,action,body,code,http", REFUSALS)
async def test_refusals_answer_at_once(
    api: Any, setup: list, action: str, body: Any, code: str, http: int
) -> None:
    key = await api.create_key()
    for step, step_body in setup:
        status, op = await api.command(key["id"], step, **(step_body or {}))
        assert op["status"] == "SUCCEEDED", op
    _, before = await api.call("GET", f"/v1/keys/{key['id']}")
    status, err = await api.call("POST", f"/v1/keys/{key['id']}/{action}", json=body)
    assert status == http, err
    assert err["error"]["code"] == code
    assert err["error"]["message"] and err["error"]["request_id"]
    _, after = await api.call("GET", f"/v1/keys/{key['id']}")
    assert after == before  # nothing changed


async def test_commands_queued_behind_create_are_judged_on_projected_state(api: Any) -> None:
    status, answer = await api.call("POST", "/v1/keys", json={"name": "p", "key_spec": "AES_256"})
    kid = answer["key"]["id"]
    # not settled: the key is still CREATING, but its create is queued
    status, _ = await api.call("POST", f"/v1/keys/{kid}/disable")
    assert status == 202
    status, _ = await api.call("POST", f"/v1/keys/{kid}/schedule-deletion", json={"pending_window_days": 7})
    assert status == 202
    status, err = await api.call("POST", f"/v1/keys/{kid}/enable")
    assert status == 409 and err["error"]["code"] == "InvalidKeyState"
    await api.settle()
    _, key = await api.call("GET", f"/v1/keys/{kid}")
    assert key["state"] == "PENDING_DELETION"


async def test_projects_are_isolated(api: Any) -> None:
    key = await api.create_key()
    for method, path, body in [
        ("GET", f"/v1/keys/{key['id']}", None),
        ("POST", f"/v1/keys/{key['id']}/disable", None),
        ("PATCH", f"/v1/keys/{key['id']}", {"name": "x"}),
    ]:
        status, err = await api.call(method, path, api.other, json=body)
        assert status == 404 and err["error"]["code"] == "NotFound"
    _, listing = await api.call("GET", "/v1/keys", api.other)
    assert listing["keys"] == []
    _, ops = await api.call("GET", "/v1/operations", api.other)
    assert ops["operations"] == []


async def test_auth_errors(api: Any) -> None:
    resp = await api.client.get("/v1/keys")
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "Unauthenticated"
    status, err = await api.call("GET", "/v1/keys", "kms_not-a-token")
    assert status == 401
    status, err = await api.call("POST", "/v1/keys", api.service, json={"name": "x", "key_spec": "AES_256"})
    assert status == 403 and err["error"]["code"] == "Forbidden"


@pytest.mark.parametrize(
    "body,fragment",
    [
        ({"key_spec": "AES_256"}, "name"),
        ({"name": "x", "key_spec": "AES_128"}, "key_spec"),
        ({"name": "x", "key_spec": "EC_P256", "key_usage": "ENCRYPT_DECRYPT"}, "key_usage"),
        ({"name": "x", "key_spec": "AES_256", "key_type": "ASYMMETRIC"}, "key_type"),
        ({"name": "x", "key_spec": "AES_256", "origin": "MARS"}, "origin"),
        ({"name": "x", "key_spec": "AES_256", "tags": ["a"]}, "tags"),
        ({"name": "x", "key_spec": "AES_256", "colour": "red"}, "colour"),
    ],
)
async def test_create_validation(api: Any, body: dict, fragment: str) -> None:
    status, err = await api.call("POST", "/v1/keys", json=body)
    assert status == 400 and err["error"]["code"] == "ValidationError"
    assert fragment in err["error"]["message"]


async def test_bad_json(api: Any) -> None:
    status, err = await api.call(
        "POST", "/v1/keys", data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert status == 400 and err["error"]["code"] == "ValidationError"


async def test_list_filters_and_pagination(api: Any) -> None:
    for i in range(5):
        await api.create_key(name=f"batch-{i}", tags={"env": "prod" if i % 2 else "dev"})
    await api.create_key(name="other", origin="EXTERNAL")
    seen: list[str] = []
    cursor = None
    while True:
        path = "/v1/keys?limit=2" + (f"&cursor={cursor}" if cursor else "")
        _, page = await api.call("GET", path)
        seen += [k["id"] for k in page["keys"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 6
    _, page = await api.call("GET", "/v1/keys?q=BATCH")
    assert len(page["keys"]) == 5
    _, page = await api.call("GET", "/v1/keys?tag=env:prod")
    assert {k["name"] for k in page["keys"]} == {"batch-1", "batch-3"}
    _, page = await api.call("GET", "/v1/keys?state=PENDING_IMPORT")
    assert [k["name"] for k in page["keys"]] == ["other"]
    _, page = await api.call("GET", "/v1/keys?manager=VNGCLOUD")
    assert page["keys"] == []
    status, err = await api.call("GET", "/v1/keys?cursor=garbage")
    assert status == 400 and "cursor" in err["error"]["message"]
    status, err = await api.call("GET", "/v1/keys?state=SLEEPING")
    assert status == 400


async def test_patch_key(api: Any) -> None:
    key = await api.create_key()
    status, key2 = await api.call(
        "PATCH", f"/v1/keys/{key['id']}", json={"name": "renamed", "tags": {"a": "b"}}
    )
    assert status == 200 and key2["name"] == "renamed" and key2["tags"] == {"a": "b"}
    _, page = await api.call("GET", "/v1/keys?tag=a:b")
    assert [k["id"] for k in page["keys"]] == [key["id"]]


async def test_managed_keys_are_read_only(api: Any) -> None:
    status, answer = await api.call(
        "POST",
        "/v1/projects/alpha/managed-keys",
        api.service,
        json={"service": "vserver", "name": "disk", "key_spec": "AES_256"},
    )
    assert status == 202, answer
    await api.settle()
    kid = answer["key"]["id"]
    # the service polls what it submitted; the project sees the key
    status, op = await api.call("GET", f"/v1/operations/{answer['operation']['id']}", api.service)
    assert status == 200 and op["status"] == "SUCCEEDED"
    status, _ = await api.call("GET", f"/v1/operations/{answer['operation']['id']}", api.other)
    assert status == 404
    _, key = await api.call("GET", f"/v1/keys/{kid}")
    assert key["manager"] == "VNGCLOUD" and key["state"] == "ACTIVE" and key["service"] == "vserver"
    _, page = await api.call("GET", "/v1/keys?manager=VNGCLOUD")
    assert [k["id"] for k in page["keys"]] == [kid]
    for action in ("disable", "schedule-deletion"):
        status, err = await api.call("POST", f"/v1/keys/{kid}/{action}", json={})
        assert status == 403 and err["error"]["code"] == "ManagedKeyReadOnly"
    status, err = await api.call("PATCH", f"/v1/keys/{kid}", json={"name": "x"})
    assert status == 403
    status, err = await api.call(
        "POST",
        "/v1/projects/alpha/managed-keys",
        api.member,
        json={"service": "s", "name": "disk", "key_spec": "AES_256"},
    )
    assert status == 403


async def test_idempotency_key(api: Any) -> None:
    body = {"name": "idem", "key_spec": "AES_256"}
    headers = {"Idempotency-Key": "abc-123"}
    s1, a1 = await api.call("POST", "/v1/keys", json=body, headers=headers)
    s2, a2 = await api.call("POST", "/v1/keys", json=body, headers=headers)
    assert s1 == 202 and s2 in (200, 202)
    assert a1["operation"]["id"] == a2["operation"]["id"]
    status, err = await api.call("POST", "/v1/keys", json={**body, "name": "other"}, headers=headers)
    assert status == 409 and err["error"]["code"] == "IdempotencyConflict"
    await api.settle()
    _, page = await api.call("GET", "/v1/keys")
    assert len(page["keys"]) == 1


async def test_health_and_openapi(api: Any) -> None:
    resp = await api.client.get("/healthz")
    assert resp.status == 200
    resp = await api.client.get("/readyz")
    assert resp.status == 200
    resp = await api.client.get("/v1/openapi.json")
    spec = await resp.json()
    assert "/v1/keys/{key_id}/schedule-deletion" in spec["paths"]
    assert "X-Request-Id" in resp.headers


async def test_unknown_route_is_json(api: Any) -> None:
    status, err = await api.call("GET", "/v1/nothing")
    assert status == 404 and err["error"]["code"] == "NotFound"


async def test_no_material_in_database_or_responses(api: Any, rt: Any) -> None:
    from models.tables import KeyMaterial

    key = await api.create_key()
    with rt.db.read() as s:
        row = s.get(KeyMaterial, (key["id"], 1))
        sealed = row.sealed
    from kms.crypto.envelope import material_context

    material = rt.keyring.open(sealed, material_context(key["id"], 1))
    assert len(material) == 32 and material not in sealed
    # a sealed blob does not open as another row's
    with pytest.raises(ValueError):
        rt.keyring.open(sealed, material_context(key["id"], 2))
