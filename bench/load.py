"""The load generator and the completion poller shared by the benchmarks.

One aiohttp ``ClientSession``, ``concurrency`` coroutines in a closed loop, a
bounded total request count and a time cap. Latency is measured with
``time.perf_counter`` from just before the request to the end of the body.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

#: Hard limit on one request, so a stuck server cannot hang the benchmark.
REQUEST_TIMEOUT_S = 30.0


@dataclass
class LoadResult:
    requested: int
    concurrency: int
    elapsed_s: float = 0.0
    #: wall-clock (time.time) and perf_counter when the first request was sent
    first_send_wall: float = 0.0
    first_send_perf: float = 0.0
    latencies_s: list[float] = field(default_factory=list)  # of accepted (2xx) answers only
    statuses: Counter[int | str] = field(default_factory=Counter)
    operation_ids: list[str] = field(default_factory=list)
    timed_out: bool = False

    @property
    def ok(self) -> int:
        return sum(
            n for status, n in self.statuses.items() if isinstance(status, int) and 200 <= status < 300
        )

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile_ms(self, p: float) -> float:
        return percentile(self.latencies_s, p) * 1000.0

    def describe(self) -> str:
        errors = {k: v for k, v in self.statuses.items() if not (isinstance(k, int) and 200 <= k < 300)}
        text = (
            f"{self.ok}/{self.requested} accepted in {self.elapsed_s:.2f}s = {self.rate:,.0f}/s; "
            f"latency p50 {self.percentile_ms(50):.1f} ms, p90 {self.percentile_ms(90):.1f} ms, "
            f"p99 {self.percentile_ms(99):.1f} ms, max {self.percentile_ms(100):.1f} ms"
        )
        if errors:
            text += f"; other answers: {dict(errors)}"
        if self.timed_out:
            text += " (stopped by the time cap)"
        return text


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def new_session(concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, force_close=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))


async def run_load(
    session: aiohttp.ClientSession,
    url: str | Callable[[int], str],
    *,
    token: str | None,
    body: Callable[[int], dict[str, Any]],
    total: int,
    concurrency: int,
    time_cap_s: float,
    collect_ids: bool = False,
    headers: Mapping[str, str] | None = None,
    content_type: str = "application/json",
    on_ok: Callable[[int, bytes], None] | None = None,
) -> LoadResult:
    """POST ``body(i)`` (as JSON) to ``url`` (or ``url(i)``) for i in range(total) from
    ``concurrency`` clients, stopping early at the cap. ``token`` is sent as a bearer token
    (None: no ``Authorization`` unless ``headers`` has one); ``on_ok(i, payload)`` sees
    every 2xx answer."""
    result = LoadResult(requested=total, concurrency=concurrency)
    sent_headers = {"Content-Type": content_type, **(headers or {})}
    if token is not None:
        sent_headers["Authorization"] = f"Bearer {token}"

    def url_of(i: int) -> str:
        return url(i) if callable(url) else url

    next_index = 0
    started = time.perf_counter()
    deadline = started + time_cap_s
    result.first_send_perf = started
    result.first_send_wall = time.time()

    async def client() -> None:
        nonlocal next_index
        while next_index < total:
            if time.perf_counter() >= deadline:
                result.timed_out = True
                return
            i = next_index
            next_index += 1
            sent = time.perf_counter()
            try:
                data = json.dumps(body(i)).encode()
                async with session.post(url_of(i), data=data, headers=sent_headers) as resp:
                    payload = await resp.read()
                    status: int | str = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                result.statuses[type(exc).__name__] += 1
                continue
            latency = time.perf_counter() - sent
            result.statuses[status] += 1
            if isinstance(status, int) and 200 <= status < 300:
                result.latencies_s.append(latency)
                if collect_ids:
                    result.operation_ids.append(_operation_id(payload))
                if on_ok is not None:
                    on_ok(i, payload)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    result.elapsed_s = time.perf_counter() - started
    return result


def _operation_id(payload: bytes) -> str:
    try:
        return str(json.loads(payload)["operation"]["id"])
    except (ValueError, KeyError, TypeError):
        return ""


# --- waiting for the work to finish -------------------------------------------------------------


@dataclass
class Completion:
    finished: bool
    #: perf_counter just before the poll that first saw nothing QUEUED or RUNNING
    done_perf: float
    succeeded: int
    failed: int
    polls: int
    #: the latest ``finished_at`` among the operations, from the server (wall clock)
    last_finished_wall: float | None
    failure_codes: Counter[str] = field(default_factory=Counter)


def _parse_ts(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


async def _get_json(session: aiohttp.ClientSession, url: str, token: str) -> dict[str, Any]:
    async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
        if resp.status != 200:
            raise RuntimeError(f"GET {url} answered {resp.status}: {(await resp.text())[:200]}")
        data: dict[str, Any] = await resp.json()
        return data


def _kind_query(kind: str | None) -> str:
    return f"&kind={kind}" if kind else ""


async def _any_with_status(
    session: aiohttp.ClientSession, base: str, token: str, status: str, kind: str | None = None
) -> bool:
    data = await _get_json(session, f"{base}/v1/operations?status={status}&limit=1{_kind_query(kind)}", token)
    return bool(data.get("operations"))


async def count_final(
    session: aiohttp.ClientSession, base: str, token: str, max_pages: int = 50, kind: str | None = None
) -> tuple[int, int, float | None, Counter[str]]:
    """Page through SUCCEEDED and FAILED operations (of ``kind``, or all):
    (succeeded, failed, last finished_at, codes)."""
    counts = {"SUCCEEDED": 0, "FAILED": 0}
    last: float | None = None
    codes: Counter[str] = Counter()
    for status in counts:
        cursor: str | None = None
        for _ in range(max_pages):
            url = f"{base}/v1/operations?status={status}&limit=1000{_kind_query(kind)}"
            if cursor:
                url += f"&cursor={cursor}"
            data = await _get_json(session, url, token)
            for op in data.get("operations", []):
                counts[status] += 1
                ts = _parse_ts(op.get("finished_at"))
                if ts is not None and (last is None or ts > last):
                    last = ts
                if status == "FAILED":
                    codes[str((op.get("error") or {}).get("code"))] += 1
            cursor = data.get("next_cursor")
            if not cursor:
                break
    return counts["SUCCEEDED"], counts["FAILED"], last, codes


async def count_keys(
    session: aiohttp.ClientSession, base: str, token: str, state: str, max_pages: int = 50
) -> int:
    """How many of the project's keys are in ``state`` (paging through GET /v1/keys)."""
    total = 0
    cursor: str | None = None
    for _ in range(max_pages):
        url = f"{base}/v1/keys?state={state}&limit=1000"
        if cursor:
            url += f"&cursor={cursor}"
        data = await _get_json(session, url, token)
        total += len(data.get("keys", []))
        cursor = data.get("next_cursor")
        if not cursor:
            break
    return total


async def wait_until_done(
    session: aiohttp.ClientSession,
    base: str,
    token: str,
    *,
    expected: int,
    time_cap_s: float,
    poll_interval_s: float,
    kind: str | None = None,
) -> Completion:
    """Poll cheaply (one QUEUED and one RUNNING operation, ``limit=1``) until neither is left,
    then confirm by counting every finished operation; give up at the time cap. With
    ``kind``, only operations of that kind are looked at."""
    deadline = time.perf_counter() + time_cap_s
    polls = 0
    while True:
        polls += 1
        before = time.perf_counter()
        busy = await _any_with_status(session, base, token, "QUEUED", kind) or await _any_with_status(
            session, base, token, "RUNNING", kind
        )
        if not busy:
            ok, failed, last, codes = await count_final(session, base, token, kind=kind)
            if ok + failed >= expected:
                return Completion(True, before, ok, failed, polls, last, codes)
        if time.perf_counter() >= deadline:
            ok, failed, last, codes = await count_final(session, base, token, kind=kind)
            return Completion(False, time.perf_counter(), ok, failed, polls, last, codes)
        await asyncio.sleep(poll_interval_s)
