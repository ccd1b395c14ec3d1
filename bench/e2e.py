"""AES_256 keys reaching ACTIVE per second, end to end.

Submit N creates (50 concurrent clients), then poll cheaply (one QUEUED and one
RUNNING operation, ``limit=1``) until none is left and every operation has
finished. Rate = keys ACTIVE / (first submit → last ACTIVE seen).

Baseline: the rate at which the same run's creates were accepted, so the ratio
says whether the workers keep up with the front door (1.0 = they do).
Target (issue 2): >= 500 keys/s.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

from bench.harness import KmsServer
from bench.load import Completion, LoadResult, count_keys, new_session, run_load, wait_until_done
from bench.options import Options
from bench.report import Result, Target, cpu_line, disturbed

NAME = "e2e"


@dataclass
class Run:
    load: LoadResult
    done: Completion
    active_keys: int
    cpu_before: dict[str, float] = field(default_factory=dict)
    cpu_after: dict[str, float] = field(default_factory=dict)
    client_cpu_s: float = 0.0

    @property
    def end_to_end_s(self) -> float:
        return self.done.done_perf - self.load.first_send_perf

    @property
    def rate(self) -> float:
        return self.done.succeeded / self.end_to_end_s if self.end_to_end_s > 0 else math.nan

    @property
    def server_side_rate(self) -> float:
        """The same rate from the server's own ``finished_at`` of the last operation."""
        if self.done.last_finished_wall is None:
            return math.nan
        span = self.done.last_finished_wall - self.load.first_send_wall
        return self.done.succeeded / span if span > 0 else math.nan


async def submit_and_wait(
    server: KmsServer, *, key_spec: str, count: int, concurrency: int, submit_cap_s: float, done_cap_s: float,
    poll_interval_s: float,
) -> Run:  # fmt: skip
    """Create ``count`` keys of ``key_spec`` and wait until every operation has finished."""

    def body(i: int) -> dict[str, Any]:
        return {"name": f"bench-{key_spec.lower()}-{i}", "key_spec": key_spec}

    async with new_session(concurrency) as session:
        cpu_before, client_before = server.cpu_by_part(), time.process_time()
        load = await run_load(
            session, f"{server.base_url}/v1/keys", token=server.member_token, body=body, total=count,
            concurrency=concurrency, time_cap_s=submit_cap_s,
        )  # fmt: skip
        done = await wait_until_done(
            session, server.base_url, server.member_token, expected=load.ok,
            time_cap_s=done_cap_s, poll_interval_s=poll_interval_s,
        )  # fmt: skip
        cpu_after, client_cpu = server.cpu_by_part(), time.process_time() - client_before
        active = await count_keys(session, server.base_url, server.member_token, "ACTIVE")
    return Run(load, done, active, cpu_before, cpu_after, client_cpu)


def describe(tag: str, run: Run) -> str:
    """Print the run's details; returns its CPU line."""
    d = run.done
    print(f"[{tag}]   submitted: {run.load.describe()}", flush=True)
    state = "all finished" if d.finished else "NOT all finished before the time cap"
    print(
        f"[{tag}]   {state}: {d.succeeded} succeeded, {d.failed} failed{_codes(d)}, "
        f"{run.active_keys} keys ACTIVE; "
        f"first submit -> last done {run.end_to_end_s:.2f}s ({d.polls} polls) = {run.rate:,.1f}/s; "
        f"by server finished_at {run.server_side_rate:,.1f}/s",
        flush=True,
    )
    cpu = cpu_line(run.cpu_before, run.cpu_after, run.end_to_end_s, run.client_cpu_s)
    print(f"[{tag}]   {cpu}", flush=True)
    return cpu


def _codes(d: Completion) -> str:
    return f" {dict(d.failure_codes)}" if d.failure_codes else ""


def run(opts: Options) -> list[Result]:
    print(
        f"[e2e] kms serve: {opts.e2e_keys} AES_256 creates, {opts.concurrency} clients, then wait", flush=True
    )
    with KmsServer(name="e2e") as server:
        print(f"[e2e]   server ready in {server.startup_s:.1f}s at {server.base_url}", flush=True)
        result = asyncio.run(
            submit_and_wait(
                server, key_spec="AES_256", count=opts.e2e_keys, concurrency=opts.concurrency,
                submit_cap_s=opts.e2e_time_cap_s, done_cap_s=opts.e2e_time_cap_s,
                poll_interval_s=opts.poll_interval_s,
            )
        )  # fmt: skip
        cpu = describe("e2e", result)
    note = (
        f"{result.done.succeeded} of {result.load.ok} ACTIVE in {result.end_to_end_s:.2f}s"
        + ("" if result.done.finished else " (time cap hit)")
        + (f"; {result.done.failed} FAILED" if result.done.failed else "")
        + disturbed(cpu)
    )
    return [
        Result(NAME, "AES_256 keys ACTIVE/s end to end", result.rate, "/s", result.load.rate,
               "accepted/s, same run", Target(">=", 500, unit="/s"), note=note),
    ]  # fmt: skip
