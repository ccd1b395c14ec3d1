"""`kms serve` on an outside Redis (KMS_REDIS_URL): the CI Redis when configured,
else a redis-server this test starts. Redis loses everything while deletions
are pending; they still happen, at most one sweep (plus the grace) late."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

pytestmark = pytest.mark.integration


@pytest.fixture
def outside_redis(tmp_path: Path) -> Iterator[str]:
    url = os.environ.get("KMS_TEST_REDIS_URL")
    if url:
        redis.Redis.from_url(url).ping()  # fail, not skip, if it is configured but down
        yield url
        return
    from kms.supervisor import start_embedded_redis

    child, url = start_embedded_redis(tmp_path / "outside", dict(os.environ))
    yield url
    child.stop(5)


async def _call(
    session: aiohttp.ClientSession, served: Any, method: str, path: str, **kw: Any
) -> tuple[int, Any]:
    headers = {**served.headers(), **kw.pop("headers", {})}
    async with session.request(method, served.url + path, headers=headers, **kw) as resp:
        return resp.status, await resp.json()


async def test_deletions_survive_redis_flush(serve_factory: Any, outside_redis: str) -> None:
    namespace = f"kms-flush-{os.getpid()}-{time.monotonic_ns()}"
    served = serve_factory(
        {
            "KMS_REDIS_URL": outside_redis,
            "KMS_QUEUE_NAMESPACE": namespace,
            "KMS_SWEEP_INTERVAL_S": "1",
            "KMS_TIMER_GRACE_S": "2",
        }
    )
    async with aiohttp.ClientSession() as session:
        key_ids = []
        for i in range(5):
            status, answer = await _call(
                session,
                served,
                "POST",
                "/v1/keys",
                json={"name": f"flush-{i}", "key_spec": "AES_256"},
                headers={"Prefer": "wait=10"},
            )
            assert status == 200, answer
            key_ids.append(answer["key"]["id"])
        scheduled = time.monotonic()
        for kid in key_ids:
            status, answer = await _call(
                session,
                served,
                "POST",
                f"/v1/keys/{kid}/schedule-deletion",
                json={"pending_window_days": 7},
                headers={"Prefer": "wait=10"},
            )
            assert status == 200 and answer["operation"]["status"] == "SUCCEEDED", answer
        await asyncio.sleep(1.0)
        # Redis loses everything, delayed deletion messages included.
        client = redis.Redis.from_url(outside_redis)
        lost = client.keys(f"{namespace}:*")
        assert lost, "expected the delayed messages to be in Redis"
        client.delete(*lost)

        remaining = set(key_ids)
        while remaining and time.monotonic() - scheduled < 20:
            for kid in list(remaining):
                status, _ = await _call(session, served, "GET", f"/v1/keys/{kid}")
                if status == 404:
                    elapsed = time.monotonic() - scheduled
                    assert elapsed >= 7.0, f"deleted early: {elapsed:.1f}s"
                    remaining.discard(kid)
            await asyncio.sleep(0.2)
        elapsed = time.monotonic() - scheduled
        assert not remaining, f"{len(remaining)} keys not deleted {elapsed:.1f}s after scheduling"
        # due at 7 s (+ the time to schedule them), re-sent after grace 2 s, sweep 1 s
        assert elapsed <= 7 + 2 + 1 + 3, elapsed
