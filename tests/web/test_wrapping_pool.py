"""Wrapping key pairs: reserved from the pool in groups, handed out without a write,
bound in bulk, and destroyed after their validity (or when never bound)."""

from __future__ import annotations

import base64
import os
from dataclasses import replace
from typing import Any

from sqlalchemy import select

from kms.crypto.wrapping import wrap_material
from models.tables import WrappingKey
from web.handlers.common import WRAPPING_POOL
from workers.imports import refill_pool
from workers.scheduler import sweep_once


def rows(rt: Any) -> list[WrappingKey]:
    with rt.db.read() as s:
        return list(s.execute(select(WrappingKey).order_by(WrappingKey.created_at)).scalars())


async def test_pool_reservation_binding_and_destruction(api: Any, rt: Any) -> None:
    assert refill_pool(replace(rt, settings=rt.settings.with_(wrapping_pool_size=3)), "RSA_2048") == 3
    keys = [(await api.create_key(origin="EXTERNAL"))["id"] for _ in range(2)]
    params = []
    for key_id in keys:
        status, answer = await api.call(
            "POST",
            f"/v1/keys/{key_id}/import-parameters",
            json={"wrapping_key_spec": "RSA_2048", "wrapping_algorithm": "RSAES_OAEP_SHA_256"},
        )
        assert status == 200
        params.append(answer)
    assert params[0]["public_key_pem"] != params[1]["public_key_pem"]
    reserved = rows(rt)
    assert len(reserved) == 3 and all(r.issued_at is not None for r in reserved)  # one group of 3
    assert all(r.key_id is None for r in reserved)  # bindings not written yet
    # an import works before the binding is recorded: the token binds key and pair
    wrapped = wrap_material(params[0]["public_key_pem"], "RSAES_OAEP_SHA_256", os.urandom(32))
    status, answer = await api.call(
        "POST",
        f"/v1/keys/{keys[0]}/import",
        json={
            "encrypted_key_material": base64.b64encode(wrapped).decode(),
            "import_token": params[0]["import_token"],
        },
    )
    assert status == 202
    await api.settle()
    _, key = await api.call("GET", f"/v1/keys/{keys[0]}")
    assert key["state"] == "ACTIVE"
    assert api.client.app[WRAPPING_POOL].bindings.flush() == 2
    bound = {r.key_id for r in rows(rt)}
    assert set(keys) <= bound and None in bound  # the third pair: reserved, unused
    # a pair of another key's token is refused at once
    status, err = await api.call(
        "POST",
        f"/v1/keys/{keys[1]}/import",
        json={
            "encrypted_key_material": base64.b64encode(wrapped).decode(),
            "import_token": params[0]["import_token"],
        },
    )
    assert status == 400 and err["error"]["code"] == "InvalidImportToken"
    rt.clock.advance(rt.settings.day_s * 2 + 1)
    assert sweep_once(rt).wrapping_keys_destroyed == 3
    assert all(r.issued_at is None for r in rows(rt))  # only fresh pairs the pool refilled
