"""A small asynchronous client for the KMS HTTP API (aiohttp based).

    async with KmsClient("http://127.0.0.1:8080", token) as kms:
        answer = await kms.create_key(name="orders", key_spec="AES_256")
        op = await kms.wait_operation(answer["operation"]["id"])

Errors come back as :class:`ApiError` carrying the service's stable ``code``.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

FINAL = ("SUCCEEDED", "FAILED")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, request_id: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message, self.request_id = status, code, message, request_id


class KmsClient:
    def __init__(self, url: str, token: str, *, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KmsClient:
        self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        retries_on_429: int = 5,
        **kwargs: Any,
    ) -> Any:
        """One API call. A 429 answer is retried after its Retry-After, a few times
        (the request was refused, so repeating it cannot do anything twice)."""
        assert self._session is not None, "use `async with KmsClient(...)`"
        attempt = 0
        while True:
            async with self._session.request(method, self.url + path, headers=headers, **kwargs) as resp:
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = None
                if resp.status == 429 and attempt < retries_on_429:
                    attempt += 1
                    await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
                    continue
                if resp.status >= 400:
                    err = (body or {}).get("error", {}) if isinstance(body, dict) else {}
                    raise ApiError(
                        resp.status,
                        err.get("code", f"HTTP{resp.status}"),
                        err.get("message", resp.reason or ""),
                        err.get("request_id", ""),
                    )
                return body

    # --- keys ------------------------------------------------------------------

    async def create_key(
        self, *, wait_s: float = 0, idempotency_key: str | None = None, **body: Any
    ) -> dict[str, Any]:
        headers = {"Prefer": f"wait={wait_s:g}"} if wait_s else {}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return dict(await self.request("POST", "/v1/keys", json=body, headers=headers))

    async def get_key(self, key_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"/v1/keys/{key_id}"))

    async def list_keys(self, **filters: str) -> AsyncIterator[dict[str, Any]]:
        params = {k: v for k, v in filters.items() if v}
        while True:
            page = await self.request("GET", "/v1/keys", params=params)
            for key in page["keys"]:
                yield key
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    async def command(self, key_id: str, action: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """enable, disable, schedule-deletion, cancel-deletion → the 202 answer."""
        return dict(await self.request("POST", f"/v1/keys/{key_id}/{action}", json=body or {}))

    # --- operations ---------------------------------------------------------------

    async def get_operation(self, op_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"/v1/operations/{op_id}"))

    async def wait_operation(self, op_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """Poll (with ``Prefer: wait``) until the operation finished or the time is up."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            answer = await self.request(
                "GET",
                f"/v1/operations/{op_id}",
                headers={"Prefer": f"wait={max(1, min(25, int(remaining)))}"},
            )
            op = answer.get("operation", answer)
            if op["status"] in FINAL or remaining <= 0:
                return dict(op)
            await asyncio.sleep(0)

    # --- batches ------------------------------------------------------------------------

    async def submit_batch(
        self, operations: list[dict[str, Any]], idempotency_key: str | None = None
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        answer = await self.request("POST", "/v1/batches", json={"operations": operations}, headers=headers)
        return dict(answer["batch"])

    async def get_batch(self, batch_id: str, wait_s: float = 0) -> dict[str, Any]:
        headers = {"Prefer": f"wait={wait_s:g}"} if wait_s else None
        return dict(await self.request("GET", f"/v1/batches/{batch_id}", headers=headers))

    # --- import --------------------------------------------------------------------

    async def import_parameters(
        self, key_id: str, wrapping_key_spec: str, wrapping_algorithm: str
    ) -> dict[str, Any]:
        body = {"wrapping_key_spec": wrapping_key_spec, "wrapping_algorithm": wrapping_algorithm}
        return dict(await self.request("POST", f"/v1/keys/{key_id}/import-parameters", json=body))

    async def import_material(
        self, key_id: str, encrypted_material: bytes, import_token: bytes, expires_at: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "encrypted_key_material": base64.b64encode(encrypted_material).decode(),
            "import_token": base64.b64encode(import_token).decode(),
        }
        if expires_at:
            body["expires_at"] = expires_at
        return dict(await self.request("POST", f"/v1/keys/{key_id}/import", json=body))
