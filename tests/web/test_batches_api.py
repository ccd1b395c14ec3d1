"""Batches, cheap polling (ETag / If-None-Match, Retry-After), rate limits and quotas."""

from __future__ import annotations

from typing import Any

import pytest


async def test_mixed_batch(api: Any) -> None:
    active = await api.create_key()
    ops = [{"command": "create_key", "params": {"name": f"b-{i}", "key_spec": "AES_256"}} for i in range(5)]
    ops += [
        {"command": "create_key", "params": {"name": "bad", "key_spec": "AES_999"}},
        {"command": "enable", "key_id": "00000000-0000-0000-0000-000000000000"},
        {"command": "cancel_deletion", "key_id": active["id"]},
        {"command": "explode", "key_id": active["id"]},
        {"command": "schedule_deletion", "key_id": active["id"], "params": {"pending_window_days": 3}},
        {"command": "disable", "key_id": active["id"]},
    ]
    status, answer = await api.call("POST", "/v1/batches", json={"operations": ops})
    assert status == 202, answer
    batch = answer["batch"]
    assert (batch["total"], batch["accepted"], batch["rejected"]) == (11, 6, 5)
    codes = {item["index"]: (item["error"] or {}).get("code") for item in batch["items"]}
    assert codes == {
        0: None,
        1: None,
        2: None,
        3: None,
        4: None,
        5: "ValidationError",
        6: "NotFound",
        7: "InvalidKeyState",
        8: "ValidationError",
        9: "ValidationError",
        10: None,
    }
    assert all(item["operation_id"] for item in batch["items"] if not item["error"])
    await api.settle()
    status, progress = await api.call("GET", f"/v1/batches/{batch['id']}")
    assert status == 200 and progress["done"] is True and progress["finished_at"]
    assert progress["counts"] == {"QUEUED": 0, "RUNNING": 0, "SUCCEEDED": 6, "FAILED": 0}
    _, items = await api.call("GET", f"/v1/operations?batch_id={batch['id']}")
    assert len(items["operations"]) == 6
    _, key = await api.call("GET", f"/v1/keys/{active['id']}")
    assert key["state"] == "DISABLED"
    _, listing = await api.call("GET", "/v1/batches")
    assert [b["id"] for b in listing["batches"]] == [batch["id"]]


async def test_batch_limits_and_validation(api: Any) -> None:
    ops = [{"command": "create_key", "params": {"name": "x", "key_spec": "AES_256"}}] * 1001
    status, err = await api.call("POST", "/v1/batches", json={"operations": ops})
    assert status == 413 and err["error"]["code"] == "PayloadTooLarge" and "1000" in err["error"]["message"]
    status, err = await api.call("POST", "/v1/batches", json={"operations": []})
    assert status == 400
    status, err = await api.call("GET", "/v1/batches/nope")
    assert status == 404


async def test_thousand_item_batch(api: Any) -> None:
    ops = [
        {"command": "create_key", "params": {"name": f"k-{i}", "key_spec": "AES_256"}} for i in range(1000)
    ]
    status, answer = await api.call("POST", "/v1/batches", json={"operations": ops})
    assert status == 202 and answer["batch"]["accepted"] == 1000
    assert (
        "Retry-After"
        in (await api.client.get(f"/v1/batches/{answer['batch']['id']}", headers=api.auth())).headers
    )
    status, done = await api.call(
        "GET", f"/v1/batches/{answer['batch']['id']}", headers={"Prefer": "wait=30"}
    )
    assert done["done"] and done["counts"]["SUCCEEDED"] == 1000
    _, page = await api.call("GET", "/v1/keys?state=ACTIVE&limit=1000")
    assert len(page["keys"]) == 1000 and len({k["id"] for k in page["keys"]}) == 1000


async def test_batch_idempotency(api: Any) -> None:
    body = {"operations": [{"command": "create_key", "params": {"name": "once", "key_spec": "AES_256"}}]}
    headers = {"Idempotency-Key": "nightly-2026-12-04"}
    _, first = await api.call("POST", "/v1/batches", json=body, headers=headers)
    _, again = await api.call("POST", "/v1/batches", json=body, headers=headers)
    assert first["batch"]["id"] == again["batch"]["id"]
    assert first["batch"]["items"][0]["operation_id"] == again["batch"]["items"][0]["operation_id"]
    status, err = await api.call(
        "POST", "/v1/batches", json={"operations": body["operations"] * 2}, headers=headers
    )
    assert status == 409 and err["error"]["code"] == "IdempotencyConflict"


async def test_polling_with_etags(api: Any) -> None:
    status, answer = await api.call("POST", "/v1/keys", json={"name": "e", "key_spec": "AES_256"})
    assert answer and status == 202
    resp = await api.client.post("/v1/keys", json={"name": "f", "key_spec": "AES_256"}, headers=api.auth())
    assert resp.status == 202 and resp.headers["Retry-After"] == "1"
    await api.settle()
    path = f"/v1/operations/{answer['operation']['id']}"
    resp = await api.client.get(path, headers=api.auth())
    etag = resp.headers["ETag"]
    resp = await api.client.get(path, headers={**api.auth(), "If-None-Match": etag})
    assert resp.status == 304 and resp.headers["ETag"] == etag
    resp = await api.client.get(path, headers={**api.auth(), "If-None-Match": '"stale"'})
    assert resp.status == 200


@pytest.fixture
async def limited(aiohttp_client: Any, api: Any, rt: Any) -> Any:
    """A second app over the same database with tiny limits."""
    from models.db import Database
    from web.app import create_app
    from web.context import Services
    from web.queue import Enqueuer

    settings = rt.settings.with_(rate_limit_rps=0.01, rate_limit_burst=3, max_keys_per_project=2)
    return await aiohttp_client(
        create_app(
            Services(
                settings=settings,
                db=Database(settings.database_url),
                keyring=rt.keyring,
                clock=rt.clock,
                queue=Enqueuer(api.broker),
            )
        )
    )


async def test_rate_limit_and_quota(api: Any, limited: Any) -> None:
    body = {"name": "q", "key_spec": "AES_256"}
    for _ in range(2):
        resp = await limited.post("/v1/keys", json=body, headers=api.auth())
        assert resp.status == 202
    resp = await limited.post("/v1/keys", json=body, headers=api.auth())  # over the key quota
    err = await resp.json()
    assert resp.status == 429 and err["error"]["code"] == "RateLimited" and "quota" in err["error"]["message"]
    assert int(resp.headers["Retry-After"]) >= 1
    resp = await limited.post("/v1/keys", json=body, headers=api.auth())  # over the rate
    assert resp.status == 429 and "rate" in (await resp.json())["error"]["message"]
    # another project is not affected
    resp = await limited.post("/v1/keys", json=body, headers=api.auth(api.other))
    assert resp.status == 202
