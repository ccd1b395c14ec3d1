"""Batches (issue 5): the time to accept a 1,000-item batch, and 10,000 AES_256
keys end to end through batches against the same 10,000 through single requests.

* accept: 1,000 ``create_key`` items per ``POST /v1/batches``, one after another
  (after two warm-up batches); p50/p99 over the measured batches. Baseline: the
  time the same 1,000 creates take as single requests at 50 clients, same server.
* end to end: 10 batches of 1,000 (4 in flight) on a fresh server, then
  ``GET /v1/batches/{id}`` (``Prefer: wait``) until every batch is done; baseline:
  10,000 single creates on another fresh server, until every operation finished.
Targets: batch acceptance p99 < 500 ms; 10,000 keys ACTIVE in < 20 s.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from bench.e2e import submit_and_wait
from bench.harness import KmsServer
from bench.load import new_session, percentile, run_load
from bench.options import Options
from bench.report import Result, Target

NAME = "batch"
ITEMS = 1000
MEASURED_BATCHES = 12
WARMUP_BATCHES = 2
E2E_BATCHES = 10
IN_FLIGHT = 4


def _ops(tag: str) -> list[dict[str, Any]]:
    return [
        {"command": "create_key", "params": {"name": f"{tag}-{i}", "key_spec": "AES_256"}}
        for i in range(ITEMS)
    ]


async def _post_batch(session: aiohttp.ClientSession, server: KmsServer, tag: str) -> tuple[float, str]:
    started = time.perf_counter()
    async with session.post(
        f"{server.base_url}/v1/batches",
        json={"operations": _ops(tag)},
        headers={"Authorization": f"Bearer {server.member_token}"},
    ) as resp:
        body = await resp.json()
        if resp.status != 202:
            raise RuntimeError(f"batch refused: {resp.status} {body}")
    return time.perf_counter() - started, str(body["batch"]["id"])


async def _wait_batches(
    session: aiohttp.ClientSession, server: KmsServer, ids: list[str], cap_s: float
) -> None:
    deadline = time.monotonic() + cap_s
    pending = list(ids)
    headers = {"Authorization": f"Bearer {server.member_token}", "Prefer": "wait=5"}
    while pending and time.monotonic() < deadline:
        batch_id = pending[0]
        async with session.get(f"{server.base_url}/v1/batches/{batch_id}", headers=headers) as resp:
            body = await resp.json()
        if body.get("done"):
            pending.pop(0)
    if pending:
        raise RuntimeError(f"{len(pending)} batches not done after {cap_s:.0f}s")


async def _acceptance(server: KmsServer, concurrency: int) -> tuple[list[float], float]:
    async with new_session(concurrency) as session:
        for i in range(WARMUP_BATCHES):
            await _post_batch(session, server, f"warm{i}")
        times = [(await _post_batch(session, server, f"m{i}"))[0] for i in range(MEASURED_BATCHES)]
        singles = await run_load(
            session, f"{server.base_url}/v1/keys", token=server.member_token,
            body=lambda i: {"name": f"single-{i}", "key_spec": "AES_256"}, total=ITEMS,
            concurrency=concurrency, time_cap_s=60,
        )  # fmt: skip
    return times, singles.elapsed_s


async def _through_batches(server: KmsServer) -> float:
    async with new_session(IN_FLIGHT) as session:
        started = time.perf_counter()
        sem = asyncio.Semaphore(IN_FLIGHT)

        async def one(i: int) -> str:
            async with sem:
                return (await _post_batch(session, server, f"e2e{i}"))[1]

        ids = await asyncio.gather(*(one(i) for i in range(E2E_BATCHES)))
        await _wait_batches(session, server, list(ids), cap_s=120)
        return time.perf_counter() - started


def run(opts: Options) -> list[Result]:
    with KmsServer(name="batch-accept") as server:
        times, singles_s = asyncio.run(_acceptance(server, opts.concurrency))
    p50, p99 = percentile(times, 50) * 1000, percentile(times, 99) * 1000
    print(f"[{NAME}] {MEASURED_BATCHES} batches of {ITEMS}: p50 {p50:.0f} ms, p99 {p99:.0f} ms; "
          f"the same {ITEMS} as single requests: {singles_s * 1000:.0f} ms")  # fmt: skip
    with KmsServer(name="batch-e2e") as server:
        batched_s = asyncio.run(_through_batches(server))
    print(f"[{NAME}] {E2E_BATCHES * ITEMS} keys through batches: {batched_s:.2f}s")
    with KmsServer(name="batch-singles") as server:
        singles = asyncio.run(submit_and_wait(
            server, key_spec="AES_256", count=E2E_BATCHES * ITEMS, concurrency=opts.concurrency,
            submit_cap_s=120, done_cap_s=120, poll_interval_s=0.5,
        ))  # fmt: skip
    single_s = singles.end_to_end_s
    print(f"[{NAME}] {E2E_BATCHES * ITEMS} keys through single requests: {single_s:.2f}s")
    return [
        Result(
            NAME,
            "1,000-item batch accepted, p50",
            p50,
            "ms",
            singles_s * 1000,
            "same 1,000 as single requests",
        ),
        Result(
            NAME,
            "1,000-item batch accepted, p99",
            p99,
            "ms",
            singles_s * 1000,
            "same 1,000 as single requests",
            Target("<", 500, unit="ms"),
        ),
        Result(
            NAME,
            "10,000 AES keys ACTIVE via batches",
            batched_s,
            "s",
            single_s,
            "via single requests",
            Target("<", 20, unit="s"),
        ),
    ]
