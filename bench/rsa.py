"""RSA_4096 keys reaching ACTIVE per second against the limit of this machine.

The limit: ``cryptography``'s own ``rsa.generate_private_key(65537, 4096)`` rate,
measured in the same run with one process per core (``os.cpu_count()``) for a
fixed time while the service is not running. Then RSA_4096 creates go through
``kms serve`` end to end. Target (issue 2): ratio >= 0.8.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import time
from dataclasses import dataclass

from bench.e2e import describe, submit_and_wait
from bench.harness import KmsServer, machine_busy_seconds
from bench.options import Options
from bench.report import Result, Target, disturbed, other_load

NAME = "rsa"
#: Safety bound on keys per process in the limit measurement.
MAX_KEYS_PER_PROCESS = 10_000


def _warm_up() -> None:
    """Pool initializer: import cryptography before the clock starts."""
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: F401


def generate_for(duration_s: float) -> tuple[int, float, float]:
    """Generate RSA-4096 keys until ``duration_s`` has passed:
    (keys, seconds until the last one, CPU seconds used)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    cpu_started = time.process_time()
    started = time.perf_counter()
    deadline = started + duration_s
    keys, last = 0, started
    while keys < MAX_KEYS_PER_PROCESS and time.perf_counter() < deadline:
        rsa.generate_private_key(public_exponent=65537, key_size=4096)
        keys += 1
        last = time.perf_counter()
    return keys, last - started, time.process_time() - cpu_started


@dataclass
class Limit:
    """The limit measured in one or more spells (each: one sample per process)."""

    #: per spell: (keys, seconds until the last key, CPU seconds) per process
    spells: list[list[tuple[int, float, float]]]
    wall_s: float
    machine_busy_s: float

    @property
    def keys(self) -> int:
        return sum(k for spell in self.spells for k, _, _ in spell)

    @property
    def rate(self) -> float:
        """Keys per second of all processes together, averaged over the spells by duration."""
        rates, weights = [], []
        for spell in self.spells:
            rates.append(sum(k / s for k, s, _ in spell if s > 0))
            weights.append(max((s for _, s, _ in spell), default=0.0))
        total = sum(weights)
        return sum(r * w for r, w in zip(rates, weights, strict=True)) / total if total > 0 else math.nan

    def describe(self) -> str:
        spells = "; ".join(
            f"{sum(k / s for k, s, _ in spell if s > 0):.2f}/s ("
            + ", ".join(f"{k} keys in {s:.1f}s" for k, s, _ in spell) + ")"
            for spell in self.spells
        )  # fmt: skip
        ours = sum(cpu for spell in self.spells for _, _, cpu in spell)
        other = other_load(self.machine_busy_s - ours, self.wall_s) if self.wall_s > 0 else ""
        return f"{self.rate:.2f} keys/s [{spells}]; CPU (% of one core): {other}"

    def merged(self, other: Limit) -> Limit:
        return Limit(self.spells + other.spells, self.wall_s + other.wall_s,
                     self.machine_busy_s + other.machine_busy_s)  # fmt: skip


def keygen_limit(duration_s: float, processes: int) -> Limit:
    """Keys per second of ``processes`` processes generating in parallel for ``duration_s``."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes, initializer=_warm_up) as pool:
        pool.map(abs, range(processes))  # start the processes before the clock
        busy_before, started = machine_busy_seconds(), time.perf_counter()
        per_process = pool.map(generate_for, [duration_s] * processes)
        busy, wall = machine_busy_seconds() - busy_before, time.perf_counter() - started
    return Limit([per_process], wall, busy)


def run(opts: Options) -> list[Result]:
    """The limit is measured in two halves, before and after the service's run, so a
    change in the machine's load during the run affects both sides alike."""
    cores = os.cpu_count() or 1
    half = opts.rsa_limit_s / 2
    print(f"[rsa] limit: cryptography generate_private_key(65537, 4096), {cores} processes, "
          f"{half:.1f}s before and {half:.1f}s after the service's run", flush=True)  # fmt: skip
    before = keygen_limit(half, cores)
    print(f"[rsa]   before: {before.describe()}", flush=True)

    print(f"[rsa] kms serve: {opts.rsa_keys} RSA_4096 creates, then wait", flush=True)
    with KmsServer(name="rsa") as server:
        print(f"[rsa]   server ready in {server.startup_s:.1f}s at {server.base_url}", flush=True)
        result = asyncio.run(
            submit_and_wait(
                server, key_spec="RSA_4096", count=opts.rsa_keys,
                concurrency=min(opts.concurrency, opts.rsa_keys),
                submit_cap_s=opts.rsa_time_cap_s, done_cap_s=opts.rsa_time_cap_s,
                poll_interval_s=max(opts.poll_interval_s, 0.1),
            )
        )  # fmt: skip
        cpu = describe("rsa", result)
    after = keygen_limit(half, cores)
    print(f"[rsa]   after: {after.describe()}", flush=True)
    limit = before.merged(after)
    print(f"[rsa]   limit {limit.rate:.2f} keys/s from {limit.keys} keys", flush=True)
    note = (
        f"{result.done.succeeded} of {result.load.ok} ACTIVE in {result.end_to_end_s:.2f}s; "
        f"limit from {limit.keys} keys by {cores} processes in {opts.rsa_limit_s:.0f}s"
        + ("" if result.done.finished else " (time cap hit)")
        + disturbed(cpu, before.describe(), after.describe())
    )
    return [
        Result(NAME, "RSA_4096 keys ACTIVE/s end to end", result.rate, "/s", limit.rate,
               f"cryptography, {cores} procs", Target(">=", 0.8, on="ratio"), note=note),
    ]  # fmt: skip
