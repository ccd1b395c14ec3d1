"""The URL table, apart from the handlers. OpenAPI is generated from it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from web.handlers import audit, batches, crypto, health, imports, keys, managed, operations, ops, ops_page


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    summary: str
    roles: tuple[str, ...] = ("member", "admin")
    accepts: bool = False  # answers 202 with an operation


ADMIN = ("admin",)

ROUTES: list[Route] = [
    Route("GET", "/healthz", health.healthz, "Process is up", roles=()),
    Route("GET", "/readyz", health.readyz, "Database and Redis reachable", roles=()),
    Route("GET", "/ops", ops_page.ops_page, "The on-call page (asks for an admin token)", roles=()),
    Route("POST", "/v1/keys", keys.create_key, "Create a customer-managed key", accepts=True),
    Route(
        "GET",
        "/v1/keys",
        keys.list_keys,
        "List keys (manager, state, q, tag filters; keyset pages)",
        roles=("member", "admin", "service"),
    ),
    Route("GET", "/v1/keys/{key_id}", keys.get_key, "Show one key", roles=("member", "admin", "service")),
    Route("PATCH", "/v1/keys/{key_id}", keys.update_key, "Edit name, description, tags"),
    Route("POST", "/v1/keys/{key_id}/enable", keys.enable_key, "Enable a key", accepts=True),
    Route("POST", "/v1/keys/{key_id}/disable", keys.disable_key, "Disable a key", accepts=True),
    Route(
        "POST",
        "/v1/keys/{key_id}/schedule-deletion",
        keys.schedule_deletion,
        "Schedule deletion after a 7-30 day waiting period",
        accepts=True,
    ),
    Route(
        "POST",
        "/v1/keys/{key_id}/cancel-deletion",
        keys.cancel_deletion,
        "Cancel a scheduled deletion (the key becomes DISABLED)",
        accepts=True,
    ),
    Route(
        "POST",
        "/v1/keys/{key_id}/import-parameters",
        imports.import_parameters,
        "Download a wrapping public key and import token (EXTERNAL keys)",
    ),
    Route(
        "POST",
        "/v1/keys/{key_id}/import",
        imports.import_material,
        "Import wrapped key material (JSON base64, or multipart files as the console uploads them)",
        accepts=True,
    ),
    Route(
        "DELETE",
        "/v1/keys/{key_id}/material",
        keys.delete_material,
        "Delete imported key material",
        accepts=True,
    ),
    Route("POST", "/v1/keys/{key_id}/encrypt", crypto.encrypt, "Encrypt up to 4096 bytes"),
    Route("POST", "/v1/keys/{key_id}/decrypt", crypto.decrypt, "Decrypt a ciphertext of this key"),
    Route(
        "POST",
        "/v1/keys/{key_id}/generate-data-key",
        crypto.generate_data_key,
        "A fresh data key, in plaintext and encrypted under this key",
    ),
    Route("POST", "/v1/keys/{key_id}/sign", crypto.sign, "Sign a message or digest"),
    Route("POST", "/v1/keys/{key_id}/verify", crypto.verify, "Verify a signature"),
    Route("GET", "/v1/keys/{key_id}/public-key", crypto.public_key, "The public key of an asymmetric key"),
    Route(
        "POST",
        "/v1/projects/{project}/managed-keys",
        managed.create_managed_key,
        "Create a provider-managed key for a project",
        roles=("service",),
        accepts=True,
    ),
    Route("POST", "/v1/batches", batches.create_batch, "Submit up to 1000 commands at once", accepts=True),
    Route("GET", "/v1/batches", batches.list_batches, "List batches"),
    Route(
        "GET",
        "/v1/batches/{batch_id}",
        batches.get_batch,
        "Progress of a batch (ETag / If-None-Match; Prefer: wait=N)",
    ),
    Route(
        "GET",
        "/v1/operations",
        operations.list_operations,
        "List operations",
        roles=("member", "admin", "service"),
    ),
    Route(
        "GET",
        "/v1/operations/{operation_id}",
        operations.get_operation,
        "Show an operation (Prefer: wait=N waits for it)",
        roles=("member", "admin", "service"),
    ),
    Route("GET", "/v1/audit", audit.list_audit, "The project's audit trail (key_id, action filters)"),
    Route("GET", "/v1/ops/queues", ops.get_queues, "Queues, workers and timers", roles=ADMIN),
    Route("GET", "/v1/ops/dead-letters", ops.list_dead_letters, "Dead-lettered messages", roles=ADMIN),
    Route(
        "POST",
        "/v1/ops/dead-letters/{message_id}/requeue",
        ops.requeue_dead_letter,
        "Requeue a dead letter (its operation runs again)",
        roles=ADMIN,
    ),
    Route(
        "DELETE",
        "/v1/ops/dead-letters/{message_id}",
        ops.delete_dead_letter,
        "Delete a dead letter (its operation ends FAILED)",
        roles=ADMIN,
    ),
    Route(
        "GET",
        "/v1/ops/batches",
        ops.list_unfinished_batches,
        "Batches in progress, all projects",
        roles=ADMIN,
    ),
]


def add_routes(app: web.Application) -> None:
    from web.metrics import metrics_handler
    from web.openapi import openapi_handler

    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
    app.router.add_get("/v1/openapi.json", openapi_handler)
    app.router.add_get("/metrics", metrics_handler)
