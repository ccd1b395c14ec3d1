"""Accepted creates per second and latency of ``POST /v1/keys`` at 50 concurrent clients.

Baseline: the same client against a trivial aiohttp handler answering 202 JSON
(:mod:`bench.baseline_server`) on loopback in a subprocess, i.e. the HTTP ceiling
of this machine. Targets (issue 2): >= 1,000 accepted/s, p99 < 50 ms.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.harness import BaselineServer, KmsServer
from bench.load import LoadResult, new_session, run_load
from bench.options import Options
from bench.report import Result, Target, cpu_line, disturbed

NAME = "accept"


def _body(i: int) -> dict[str, Any]:
    return {"name": f"bench-accept-{i}", "key_spec": "AES_256"}


@dataclass
class Measured:
    load: LoadResult
    cpu_before: dict[str, float] = field(default_factory=dict)
    cpu_after: dict[str, float] = field(default_factory=dict)
    client_cpu_s: float = 0.0


async def _measure(
    base_url: str, token: str, opts: Options, total: int, cpu: Callable[[], dict[str, float]] = dict
) -> Measured:
    """Warm up (connections, caches, workers), then the measured run; CPU is sampled around it only."""
    url = f"{base_url}/v1/keys"
    async with new_session(opts.concurrency) as session:
        warm = await run_load(
            session, url, token=token, body=_body, total=opts.accept_warmup, concurrency=opts.concurrency,
            time_cap_s=min(15.0, opts.accept_time_cap_s),
        )  # fmt: skip
        if warm.ok == 0:
            raise RuntimeError(f"warm-up got no 2xx answer from {url}: {dict(warm.statuses)}")
        cpu_before, client_before = cpu(), time.process_time()
        load = await run_load(
            session, url, token=token, body=_body, total=total, concurrency=opts.concurrency,
            time_cap_s=opts.accept_time_cap_s,
        )  # fmt: skip
        return Measured(load, cpu_before, cpu(), time.process_time() - client_before)


def run(opts: Options) -> list[Result]:
    print(f"[accept] baseline: trivial aiohttp 202 handler, {opts.concurrency} clients", flush=True)
    with BaselineServer() as baseline_server:
        url, total = baseline_server.base_url, opts.accept_baseline_requests
        base = asyncio.run(_measure(url, "baseline", opts, total)).load
    print(f"[accept]   {base.describe()}", flush=True)

    print(f"[accept] kms serve: POST /v1/keys AES_256, {opts.concurrency} clients", flush=True)
    with KmsServer(name="accept") as server:
        print(f"[accept]   server ready in {server.startup_s:.1f}s at {server.base_url}", flush=True)
        measured = asyncio.run(
            _measure(server.base_url, server.member_token, opts, opts.accept_requests, server.cpu_by_part)
        )
        kms = measured.load
        print(f"[accept]   {kms.describe()}", flush=True)
        cpu = cpu_line(measured.cpu_before, measured.cpu_after, kms.elapsed_s, measured.client_cpu_s)
        print(f"[accept]   {cpu}", flush=True)

    clients = f"{opts.concurrency} clients"
    return [
        Result(NAME, f"POST /v1/keys accepted/s ({clients})", kms.rate, "/s", base.rate, "trivial 202",
               Target(">=", 1000, unit="/s"),
               note=f"{kms.ok}/{kms.requested} accepted in {kms.elapsed_s:.2f}s; others {_others(kms)}"
                    + disturbed(cpu)),
        Result(NAME, "POST /v1/keys p50 latency", kms.percentile_ms(50), "ms", base.percentile_ms(50),
               "trivial 202"),
        Result(NAME, "POST /v1/keys p99 latency", kms.percentile_ms(99), "ms", base.percentile_ms(99),
               "trivial 202", Target("<", 50, unit="ms")),
    ]  # fmt: skip


def _others(result: LoadResult) -> str:
    others = {k: v for k, v in result.statuses.items() if not (isinstance(k, int) and 200 <= k < 300)}
    return str(others) if others else "none"
