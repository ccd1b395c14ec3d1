"""Importing key material (issue 3): import-parameters latency from the wrapping key
pool, and AES_256 imports per second end to end.

1. **Baseline**, before the service starts: what answering import-parameters costs
   without a pool, i.e. a fresh ``RSA_4096`` pair per request, generated in-process with
   ``cryptography``'s ``rsa.generate_private_key(65537, 4096)`` (bounded in count and
   time); its p50 and p99 per pair.
2. ``kms serve`` with ``KMS_WRAPPING_POOL_SIZE`` large enough for every measured call.
   N ``EXTERNAL`` ``AES_256`` keys are created (and waited for). One import-parameters
   call marks the wrapping spec as in use, so the workers fill its pool; the benchmark
   waits until the pool is full (it reads the pool's size from the server's SQLite
   database, read-only), makes the warm-up calls, waits for the refill again, then
   measures one call per key at 20 concurrent clients. N never exceeds the pool, so
   every answer comes from it (the pool's low-water mark during the run is printed).
   Target (issue 3): p99 < 20 ms.
3. Once the pool has been refilled (the workers are idle again), 32 random bytes are
   wrapped for each key with :func:`kms.crypto.wrapping.wrap_material`
   (``RSAES_OAEP_SHA_256``) under the public key of its measured call, and all N
   imports are submitted at 50 clients. Rate = imports SUCCEEDED / (first submit →
   last done). Baseline: the rate at which the same run's imports were accepted, so
   the ratio says whether the import actors keep up with the front door (1.0 = they do).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.e2e import Run, describe
from bench.harness import KmsServer
from bench.load import LoadResult, count_keys, new_session, percentile, run_load, wait_until_done
from bench.options import Options
from bench.report import Result, Target, cpu_line, disturbed

NAME = "import"
WRAPPING_ALGORITHM = "RSAES_OAEP_SHA_256"
#: Pairs the pool holds beyond the measured calls.
POOL_MARGIN = 8


# --- the baseline: a fresh RSA_4096 pair per request ---------------------------------------------


def fresh_pairs(max_keys: int, max_s: float) -> list[float]:
    """Seconds per ``rsa.generate_private_key(65537, 4096)``, one after another, until
    ``max_keys`` pairs or ``max_s`` seconds (at least 3 pairs, so there is a p50)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa.generate_private_key(public_exponent=65537, key_size=2048)  # load the library first
    deadline = time.perf_counter() + max_s
    times: list[float] = []
    while len(times) < max_keys and (len(times) < 3 or time.perf_counter() < deadline):
        started = time.perf_counter()
        rsa.generate_private_key(public_exponent=65537, key_size=4096)
        times.append(time.perf_counter() - started)
    return times


# --- the wrapping key pool, seen from outside --------------------------------------------------


class PoolGauge:
    """Unissued wrapping key pairs of one spec, read from the server's SQLite database
    (read-only; ``None`` when it cannot be read, e.g. another database is configured)."""

    def __init__(self, server: KmsServer, spec: str) -> None:
        self.path = server.data_dir / "kms.db"
        self.spec = spec
        self.server = server

    def size(self) -> int | None:
        if not Path(self.path).exists():
            return None
        try:
            with contextlib.closing(
                sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=2.0)
            ) as db:
                row = db.execute(
                    "SELECT count(*) FROM wrapping_keys WHERE spec = ? AND issued_at IS NULL", (self.spec,)
                ).fetchone()
        except sqlite3.Error:
            return None
        return int(row[0]) if row else None

    def wait_full(self, target: int, cap_s: float) -> tuple[int | None, float]:
        """Wait until the pool holds ``target`` pairs (or, if it cannot be read, until the
        workers have been idle for a second); give up at ``cap_s``. (size, seconds waited)"""
        started = time.perf_counter()
        deadline = started + cap_s
        idle_since: float | None = None
        last_cpu = self._workers_cpu()
        size = self.size()
        while time.perf_counter() < deadline:
            size = self.size()
            if size is not None and size >= target:
                break
            time.sleep(0.25)
            if size is None:  # fall back on the workers going quiet
                cpu = self._workers_cpu()
                busy = cpu - last_cpu > 0.05 * 0.25
                last_cpu = cpu
                now = time.perf_counter()
                idle_since = None if busy else (idle_since or now)
                if idle_since is not None and now - idle_since >= 1.0:
                    break
        return size, time.perf_counter() - started

    def _workers_cpu(self) -> float:
        return self.server.cpu_by_part().get("workers", 0.0)


@dataclass
class LowWater:
    """The smallest pool size seen while a run went on (polled every 0.1 s)."""

    gauge: PoolGauge
    low: int | None = None
    samples: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def watch(self, max_s: float) -> None:
        deadline = time.perf_counter() + max_s
        while not self._stop.is_set() and time.perf_counter() < deadline:
            size = await asyncio.to_thread(self.gauge.size)
            if size is not None:
                self.samples += 1
                self.low = size if self.low is None else min(self.low, size)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.1)

    def stop(self) -> None:
        self._stop.set()


# --- the service run ---------------------------------------------------------------------------


@dataclass
class Measured:
    inline_first_ms: float = float("nan")
    pool_target: int = 0
    first_fill: tuple[int | None, float] = (None, 0.0)
    params: LoadResult | None = None
    params_cpu: str = ""
    low_water: int | None = None
    wrap_s: float = 0.0
    imports: Run | None = None
    imports_cpu: str = ""
    notes: list[str] = field(default_factory=list)


def _say(text: str) -> None:
    print(f"[import]   {text}", flush=True)


async def _create_keys(server: KmsServer, count: int, opts: Options) -> list[str]:
    ids: list[str] = [""] * count

    def keep(i: int, payload: bytes) -> None:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            ids[i] = str(json.loads(payload)["key"]["id"])

    async with new_session(opts.concurrency) as session:
        load = await run_load(
            session,
            f"{server.base_url}/v1/keys",
            token=server.member_token,
            body=lambda i: {"name": f"bench-import-{i}", "key_spec": "AES_256", "origin": "EXTERNAL"},
            total=count,
            concurrency=opts.concurrency,
            time_cap_s=opts.import_time_cap_s,
            on_ok=keep,
        )
        done = await wait_until_done(
            session,
            server.base_url,
            server.member_token,
            expected=load.ok,
            time_cap_s=opts.import_time_cap_s,
            poll_interval_s=opts.poll_interval_s,
            kind="create_key",
        )
        pending = await count_keys(session, server.base_url, server.member_token, "PENDING_IMPORT")
    _say(f"{done.succeeded} EXTERNAL AES_256 keys created ({load.describe()}); {pending} PENDING_IMPORT")
    keys = [k for k in ids if k]
    if done.failed or not done.finished or pending < len(keys):
        raise RuntimeError(f"creating the keys to import into failed: {done}, {pending} PENDING_IMPORT")
    return keys


def _params_body(spec: str) -> dict[str, Any]:
    return {"wrapping_key_spec": spec, "wrapping_algorithm": WRAPPING_ALGORITHM}


async def _params_run(
    server: KmsServer,
    keys: list[str],
    total: int,
    opts: Options,
    on_ok: Callable[[int, bytes], None] | None = None,
) -> LoadResult:
    async with new_session(opts.import_concurrency) as session:
        return await run_load(
            session,
            lambda i: f"{server.base_url}/v1/keys/{keys[i % len(keys)]}/import-parameters",
            token=server.member_token,
            body=lambda _i: _params_body(opts.import_wrapping_spec),
            total=total,
            concurrency=opts.import_concurrency,
            time_cap_s=opts.import_time_cap_s,
            on_ok=on_ok,
        )


async def _measure_params(
    server: KmsServer, gauge: PoolGauge, keys: list[str], opts: Options, m: Measured
) -> list[bytes]:
    payloads: list[bytes] = [b""] * len(keys)

    def keep(i: int, payload: bytes) -> None:
        payloads[i] = payload

    watcher = LowWater(gauge)
    watch = asyncio.create_task(watcher.watch(opts.import_time_cap_s + 5))
    cpu_before, client_before = server.cpu_by_part(), time.process_time()
    m.params = await _params_run(server, keys, len(keys), opts, keep)
    cpu_after, client_cpu = server.cpu_by_part(), time.process_time() - client_before
    watcher.stop()
    await watch
    m.low_water = watcher.low
    m.params_cpu = cpu_line(cpu_before, cpu_after, m.params.elapsed_s, client_cpu)
    return payloads


def _wrap_all(keys: list[str], payloads: list[bytes]) -> list[dict[str, str]]:
    """The import request body of each key (empty where its parameters are missing)."""
    from kms.crypto.wrapping import wrap_material

    bodies: list[dict[str, str]] = []
    for payload in payloads:
        try:
            params = json.loads(payload)
            wrapped = wrap_material(params["public_key_pem"], WRAPPING_ALGORITHM, os.urandom(32))
        except (ValueError, KeyError, TypeError):
            bodies.append({})
            continue
        bodies.append(
            {
                "encrypted_key_material": base64.b64encode(wrapped).decode(),
                "import_token": params["import_token"],
            }
        )
    return bodies


async def _import_all(server: KmsServer, keys: list[str], bodies: list[dict[str, str]], opts: Options) -> Run:
    async with new_session(opts.concurrency) as session:
        cpu_before, client_before = server.cpu_by_part(), time.process_time()
        load = await run_load(
            session,
            lambda i: f"{server.base_url}/v1/keys/{keys[i]}/import",
            token=server.member_token,
            body=lambda i: bodies[i],
            total=len(keys),
            concurrency=opts.concurrency,
            time_cap_s=opts.import_time_cap_s,
        )
        done = await wait_until_done(
            session,
            server.base_url,
            server.member_token,
            expected=load.ok,
            time_cap_s=opts.import_time_cap_s,
            poll_interval_s=opts.poll_interval_s,
            kind="import",
        )
        cpu_after, client_cpu = server.cpu_by_part(), time.process_time() - client_before
        active = await count_keys(session, server.base_url, server.member_token, "ACTIVE")
    return Run(load, done, active, cpu_before, cpu_after, client_cpu)


def _service(opts: Options) -> Measured:
    spec = opts.import_wrapping_spec
    n = opts.import_keys
    m = Measured(pool_target=max(n, opts.import_warmup) + POOL_MARGIN)
    env = {"KMS_WRAPPING_POOL_SIZE": str(m.pool_target)}
    print(
        f"[import] kms serve: KMS_WRAPPING_POOL_SIZE={m.pool_target}, {n} EXTERNAL AES_256 keys", flush=True
    )
    with KmsServer(name="import", env=env) as server:
        _say(f"server ready in {server.startup_s:.1f}s at {server.base_url}")
        gauge = PoolGauge(server, spec)
        keys = asyncio.run(_create_keys(server, n, opts))

        # the first call finds the pool empty (answered by an inline pair) and marks the spec in use
        first = asyncio.run(_params_run(server, keys, 1, opts))
        if first.ok != 1:
            raise RuntimeError(f"import-parameters did not answer 200: {dict(first.statuses)}")
        m.inline_first_ms = first.percentile_ms(50)
        m.first_fill = gauge.wait_full(m.pool_target, opts.import_pool_fill_cap_s)
        size, waited = m.first_fill
        _say(
            f"first call (empty pool, {spec} pair made inline) {m.inline_first_ms:.0f} ms; "
            f"pool filled to {size} of {m.pool_target} in {waited:.1f}s"
        )
        warm = asyncio.run(_params_run(server, keys, opts.import_warmup, opts))
        size, waited = gauge.wait_full(m.pool_target, opts.import_pool_fill_cap_s)
        _say(f"warm-up: {warm.describe()}; pool back at {size} in {waited:.1f}s")

        _say(f"measured: {n} import-parameters {spec} calls, {opts.import_concurrency} clients")
        payloads = asyncio.run(_measure_params(server, gauge, keys, opts, m))
        assert m.params is not None
        _say(f"{m.params.describe()}")
        _say(f"pool low-water mark during the run: {m.low_water} (of {m.pool_target})")
        _say(m.params_cpu)
        size, waited = gauge.wait_full(m.pool_target, opts.import_pool_fill_cap_s)
        _say(f"pool refilled to {size} in {waited:.1f}s")

        started = time.perf_counter()
        bodies = _wrap_all(keys, payloads)
        m.wrap_s = time.perf_counter() - started
        ready = [(k, b) for k, b in zip(keys, bodies, strict=True) if b]
        _say(
            f"wrapped {len(ready)} AES keys in-process in {m.wrap_s:.2f}s; "
            f"importing at {opts.concurrency} clients"
        )
        if not ready:
            raise RuntimeError("no import parameters to import with")
        m.imports = asyncio.run(_import_all(server, [k for k, _ in ready], [b for _, b in ready], opts))
        m.imports_cpu = describe("import", m.imports)
    return m


def run(opts: Options) -> list[Result]:
    print(
        f"[import] baseline: a fresh RSA_4096 pair per request, in-process "
        f"(up to {opts.import_baseline_keys} pairs or {opts.import_baseline_s:.0f}s)",
        flush=True,
    )
    pairs = fresh_pairs(opts.import_baseline_keys, opts.import_baseline_s)
    base_p50, base_p99 = percentile(pairs, 50) * 1000, percentile(pairs, 99) * 1000
    cores = os.cpu_count() or 1
    mean_s = sum(pairs) / len(pairs)
    print(
        f"[import]   {len(pairs)} pairs: p50 {base_p50:.0f} ms, p99 {base_p99:.0f} ms, "
        f"mean {mean_s * 1000:.0f} ms; at most {cores / mean_s:.1f} requests/s on {cores} cores",
        flush=True,
    )

    m = _service(opts)
    assert m.params is not None and m.imports is not None
    params, imports = m.params, m.imports
    spec = opts.import_wrapping_spec
    clients = f"{opts.import_concurrency} clients"
    params_note = (
        f"{params.ok}/{params.requested} answered in {params.elapsed_s:.2f}s = {params.rate:,.0f}/s, "
        f"{spec} pairs from a pool of {m.pool_target} (low-water mark {m.low_water}); "
        f"baseline {len(pairs)} RSA_4096 pairs in-process, one after another (a server doing that "
        f"serves at most {cores / mean_s:.1f} requests/s on {cores} cores)" + disturbed(m.params_cpu)
    )
    d = imports.done
    imports_note = (
        f"{d.succeeded} of {imports.load.ok} imports SUCCEEDED in {imports.end_to_end_s:.2f}s"
        + ("" if d.finished else " (time cap hit)")
        + (f"; {d.failed} FAILED {dict(d.failure_codes)}" if d.failed else "")
        + f"; {imports.active_keys} keys ACTIVE; wrapping in-process took {m.wrap_s:.2f}s (not counted)"
        + disturbed(m.imports_cpu)
    )
    return [
        Result(
            NAME, f"import-parameters p50 ({clients}, pool)", params.percentile_ms(50), "ms", base_p50,
            "fresh RSA_4096 pair",
        ),
        Result(
            NAME, f"import-parameters p99 ({clients}, pool)", params.percentile_ms(99), "ms", base_p99,
            "fresh RSA_4096 pair", Target("<", 20, unit="ms"), note=params_note,
        ),
        Result(
            NAME, "AES_256 imports/s end to end", imports.rate, "/s", imports.load.rate,
            "accepted/s, same run", note=imports_note,
        ),
    ]  # fmt: skip
