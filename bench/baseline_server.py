"""The HTTP ceiling: a trivial aiohttp handler that answers ``POST /v1/keys`` with
``202`` and a JSON body shaped like the service's, doing no other work.

Run as ``python -m bench.baseline_server --port N`` (loopback only). The same
client measured against it and against ``kms serve`` shows how close the
service's front door gets to what aiohttp itself can do on this machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import uuid
from datetime import UTC, datetime

from aiohttp import web

_counter = itertools.count(1)


async def create_key(request: web.Request) -> web.Response:
    body = json.loads(await request.read())
    if request.headers.get("Authorization", "")[:7] != "Bearer ":
        return web.json_response({"error": {"code": "Unauthenticated"}}, status=401)
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    key_id, op_id = str(uuid.uuid4()), str(uuid.uuid4())
    seq = next(_counter)
    operation = {
        "id": op_id, "kind": "create_key", "key_id": key_id, "batch_id": None, "status": "QUEUED",
        "error": None, "result": None, "attempts": 0, "created_at": now, "started_at": None,
        "finished_at": None, "seq": seq,
    }  # fmt: skip
    key = {
        "id": key_id, "name": body.get("name", ""), "description": "", "tags": {}, "key_type": "SYMMETRIC",
        "key_spec": body.get("key_spec"), "key_usage": "ENCRYPT_DECRYPT", "origin": "VNGCLOUD",
        "manager": "CUSTOMER", "state": "CREATING", "created_at": now, "updated_at": now,
        "deletion_date": None, "pending_window_days": None,
        "material": {"state": "NONE", "imported_at": None, "expires_at": None},
    }  # fmt: skip
    return web.json_response(
        {"operation": operation, "key": key}, status=202, headers={"Location": f"/v1/operations/{op_id}"}
    )


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/keys", create_key)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(make_app(), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
