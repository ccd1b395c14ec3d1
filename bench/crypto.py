"""Encrypt and decrypt with an ``AES_256`` key (issue 4): requests per second and p99
latency at 50 concurrent clients, against two baselines measured in the same run:

* **the limit**: the same AES-256-GCM operation in-process (``cryptography``'s
  ``AESGCM`` with the key loaded once, a fresh 96-bit nonce and the same 26 bytes of
  associated data as the service's header), one thread, no HTTP;
* **moto**: moto's KMS (``moto[server]``, the ``bench`` extra) started on loopback,
  a ``SYMMETRIC_DEFAULT`` key, ``TrentService.Encrypt`` / ``Decrypt`` over its JSON
  protocol, driven by the same client.

Order: the in-process limit (no server running yet); then moto and ``kms serve`` run
side by side (the idle one costs next to nothing): one round trip each is checked and
ciphertexts are made (used round-robin by the decrypt runs), both are warmed up, and
the measured requests are split into rounds of moto encrypt, kms encrypt, moto
decrypt, kms decrypt, so a change in the machine's load during the run affects both
sides alike. Results are merged over the rounds. Target (issue 4): >= 3x moto's
throughput.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.harness import HarnessError, KmsServer, MotoServer, call_json
from bench.load import LoadResult, new_session, percentile, run_load
from bench.options import Options
from bench.report import Result, Target, cpu_line, disturbed

NAME = "crypto"
#: Ciphertexts made before the decrypt runs, used round-robin.
CIPHERTEXTS = 64


# --- the limit: the same operation in-process --------------------------------------------------


@dataclass
class InProcess:
    ops: int
    elapsed_s: float
    latencies_s: list[float]

    @property
    def rate(self) -> float:
        return self.ops / self.elapsed_s if self.elapsed_s > 0 else math.nan

    def percentile_us(self, p: float) -> float:
        return percentile(self.latencies_s, p) * 1e6

    def describe(self) -> str:
        return (
            f"{self.ops:,} ops in {self.elapsed_s:.2f}s = {self.rate:,.0f}/s; "
            f"p50 {self.percentile_us(50):.1f} us, p99 {self.percentile_us(99):.1f} us"
        )


def _timed(op: Callable[[int], object], max_ops: int, max_s: float) -> InProcess:
    latencies: list[float] = []
    clock = time.perf_counter
    started = clock()
    deadline = started + max_s
    i = 0
    while i < max_ops:
        if i % 1000 == 0 and clock() >= deadline:
            break
        t = clock()
        op(i)
        latencies.append(clock() - t)
        i += 1
    return InProcess(i, clock() - started, latencies)


def inprocess_limit(plaintext: bytes, max_ops: int, max_s: float) -> tuple[InProcess, InProcess]:
    """(encrypt, decrypt) of AES-256-GCM as the service does it, minus HTTP and the key lookup."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    header = os.urandom(22)  # version, key id, material version, algorithm
    aad = header + struct.pack(">I", 0)  # ‖ len(aad) ‖ aad, with no caller aad

    def encrypt(_i: int) -> bytes:
        nonce = os.urandom(12)
        return header + nonce + aead.encrypt(nonce, plaintext, aad)

    made = [encrypt(0) for _ in range(CIPHERTEXTS)]

    def decrypt(i: int) -> bytes:
        blob = made[i % CIPHERTEXTS]
        return aead.decrypt(blob[22:34], blob[34:], aad)

    assert decrypt(0) == plaintext
    _timed(encrypt, 2_000, 1.0)  # warm up
    return _timed(encrypt, max_ops, max_s), _timed(decrypt, max_ops, max_s)


# --- the servers: warm-up, then encrypt and decrypt runs in alternating rounds -----------------


@dataclass
class Endpoint:
    """How to encrypt and decrypt with one server's key, and how many requests to measure."""

    name: str
    encrypt_url: str
    decrypt_url: str
    encrypt_body: Callable[[int], dict[str, Any]]
    decrypt_body: Callable[[int], dict[str, Any]]
    requests: int
    token: str | None = None
    encrypt_headers: dict[str, str] | None = None
    decrypt_headers: dict[str, str] | None = None
    content_type: str = "application/json"


@dataclass
class Served:
    """One server's measured runs, merged over the rounds, and the CPU line of each run."""

    encrypt: LoadResult
    decrypt: LoadResult
    cpu_lines: list[str]


def merged(parts: list[LoadResult]) -> LoadResult:
    """Runs one after another as one: counts, latencies and elapsed time added up."""
    total = LoadResult(requested=sum(p.requested for p in parts), concurrency=parts[0].concurrency)
    for part in parts:
        total.elapsed_s += part.elapsed_s
        total.latencies_s.extend(part.latencies_s)
        total.statuses.update(part.statuses)
        total.timed_out = total.timed_out or part.timed_out
    return total


async def _load(
    session: aiohttp.ClientSession, ep: Endpoint, op: str, count: int, opts: Options
) -> LoadResult:
    enc = op == "encrypt"
    return await run_load(
        session,
        ep.encrypt_url if enc else ep.decrypt_url,
        token=ep.token,
        body=ep.encrypt_body if enc else ep.decrypt_body,
        total=count,
        concurrency=opts.concurrency,
        time_cap_s=opts.crypto_time_cap_s / opts.crypto_rounds,
        headers=ep.encrypt_headers if enc else ep.decrypt_headers,
        content_type=ep.content_type,
    )


async def measure(
    endpoints: list[Endpoint], opts: Options, cpu: Callable[[], dict[str, float]]
) -> dict[str, Served]:
    """Warm every endpoint up, then ``crypto_rounds`` rounds of: each endpoint's encrypt run,
    each endpoint's decrypt run; a change of the machine's load affects all sides alike."""
    runs: dict[tuple[str, str], list[LoadResult]] = {}
    lines: dict[str, list[str]] = {ep.name: [] for ep in endpoints}
    async with contextlib.AsyncExitStack() as stack:
        sessions = [await stack.enter_async_context(new_session(opts.concurrency)) for _ in endpoints]
        for ep, session in zip(endpoints, sessions, strict=True):
            for op in ("encrypt", "decrypt"):
                warm = await _load(session, ep, op, opts.crypto_warmup, opts)
                if warm.ok == 0:
                    raise HarnessError(f"{ep.name} {op} warm-up got no 2xx answer: {dict(warm.statuses)}")
        for n in range(opts.crypto_rounds):
            for op in ("encrypt", "decrypt"):
                for ep, session in zip(endpoints, sessions, strict=True):
                    before, client_before = cpu(), time.process_time()
                    result = await _load(session, ep, op, max(1, ep.requests // opts.crypto_rounds), opts)
                    line = cpu_line(before, cpu(), result.elapsed_s, time.process_time() - client_before)
                    print(f"[crypto]   round {n + 1} {ep.name} {op}: {result.describe()}", flush=True)
                    print(f"[crypto]     {line}", flush=True)
                    runs.setdefault((ep.name, op), []).append(result)
                    lines[ep.name].append(line)
    return {
        ep.name: Served(merged(runs[ep.name, "encrypt"]), merged(runs[ep.name, "decrypt"]), lines[ep.name])
        for ep in endpoints
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def moto_endpoint(moto: MotoServer, plaintext: bytes, opts: Options) -> Endpoint:
    """A ``SYMMETRIC_DEFAULT`` key in moto, its ciphertexts made and one round trip checked."""
    created = moto.call("CreateKey", {"KeySpec": "SYMMETRIC_DEFAULT", "KeyUsage": "ENCRYPT_DECRYPT"})
    key_id = str(created["KeyMetadata"]["KeyId"])  # type: ignore[index]
    blobs: list[str] = []
    for _ in range(CIPHERTEXTS):
        made = moto.call("Encrypt", {"KeyId": key_id, "Plaintext": _b64(plaintext)})
        blobs.append(str(made["CiphertextBlob"]))
    back = moto.call("Decrypt", {"CiphertextBlob": blobs[-1]})
    if base64.b64decode(str(back["Plaintext"])) != plaintext:
        raise HarnessError("moto's decrypt did not give the plaintext back")
    return Endpoint(
        name="moto",
        encrypt_url=f"{moto.base_url}/",
        decrypt_url=f"{moto.base_url}/",
        encrypt_body=lambda _i: {"KeyId": key_id, "Plaintext": _b64(plaintext)},
        decrypt_body=lambda i: {"CiphertextBlob": blobs[i % CIPHERTEXTS]},
        requests=opts.crypto_moto_requests,
        encrypt_headers=moto.headers("Encrypt"),
        decrypt_headers=moto.headers("Decrypt"),
        content_type="application/x-amz-json-1.1",
    )


def kms_endpoint(server: KmsServer, plaintext: bytes, opts: Options) -> Endpoint:
    """An ``AES_256`` key in ``kms serve`` (waited for), its ciphertexts made and one round trip checked."""
    auth = {"Authorization": f"Bearer {server.member_token}"}
    status, created = call_json(
        f"{server.base_url}/v1/keys",
        {"name": "bench-crypto", "key_spec": "AES_256"},
        {**auth, "Prefer": "wait=10"},
        timeout_s=20,
    )
    key = created.get("key")
    if status != 200 or not isinstance(key, dict) or key.get("state") != "ACTIVE":
        raise HarnessError(f"creating the AES_256 key answered {status}: {str(created)[:300]}")
    base = f"{server.base_url}/v1/keys/{key['id']}"
    blobs: list[str] = []
    for _ in range(CIPHERTEXTS):
        status, answer = call_json(f"{base}/encrypt", {"plaintext": _b64(plaintext)}, auth)
        if status != 200:
            raise HarnessError(f"encrypt answered {status}: {str(answer)[:300]}")
        blobs.append(str(answer["ciphertext"]))
    status, answer = call_json(f"{base}/decrypt", {"ciphertext": blobs[-1]}, auth)
    if status != 200 or base64.b64decode(str(answer.get("plaintext"))) != plaintext:
        raise HarnessError(f"decrypt did not give the plaintext back: {status} {str(answer)[:300]}")
    return Endpoint(
        name="kms",
        encrypt_url=f"{base}/encrypt",
        decrypt_url=f"{base}/decrypt",
        encrypt_body=lambda _i: {"plaintext": _b64(plaintext)},
        decrypt_body=lambda i: {"ciphertext": blobs[i % CIPHERTEXTS]},
        requests=opts.crypto_requests,
        token=server.member_token,
    )


def run(opts: Options) -> list[Result]:
    plaintext = os.urandom(opts.crypto_plaintext_bytes)
    print(f"[crypto] limit: AES-256-GCM in-process, 1 thread, {len(plaintext)}-byte plaintext", flush=True)
    limit_enc, limit_dec = inprocess_limit(plaintext, opts.crypto_inprocess_ops, opts.crypto_inprocess_s)
    print(f"[crypto]   encrypt: {limit_enc.describe()}", flush=True)
    print(f"[crypto]   decrypt: {limit_dec.describe()}", flush=True)

    print(
        f"[crypto] moto server and kms serve, {opts.concurrency} clients, {opts.crypto_rounds} "
        f"alternating rounds of {opts.crypto_moto_requests} (moto) and {opts.crypto_requests} (kms) "
        f"requests in all per operation",
        flush=True,
    )
    with MotoServer() as moto_server, KmsServer(name="crypto") as kms_server:
        print(
            f"[crypto]   moto ready in {moto_server.startup_s:.1f}s at {moto_server.base_url}; "
            f"kms serve ready in {kms_server.startup_s:.1f}s at {kms_server.base_url}",
            flush=True,
        )
        endpoints = [moto_endpoint(moto_server, plaintext, opts), kms_endpoint(kms_server, plaintext, opts)]

        def cpu() -> dict[str, float]:
            return {**moto_server.cpu_by_part(), **kms_server.cpu_by_part()}

        served = asyncio.run(measure(endpoints, opts, cpu))
    kms, moto = served["kms"], served["moto"]
    for name, s in served.items():
        print(f"[crypto]   {name} encrypt, all rounds: {s.encrypt.describe()}", flush=True)
        print(f"[crypto]   {name} decrypt, all rounds: {s.decrypt.describe()}", flush=True)

    clients = f"{opts.concurrency} clients"
    results: list[Result] = []
    for op, ours, theirs, limit in (
        ("encrypt", kms.encrypt, moto.encrypt, limit_enc),
        ("decrypt", kms.decrypt, moto.decrypt, limit_dec),
    ):
        note = (
            f"kms {ours.ok}/{ours.requested} in {ours.elapsed_s:.2f}s, "
            f"moto {theirs.ok}/{theirs.requested} in {theirs.elapsed_s:.2f}s, "
            f"in {opts.crypto_rounds} alternating rounds" + disturbed(*kms.cpu_lines, *moto.cpu_lines)
        )
        p_note = (
            f"p50 kms {ours.percentile_ms(50):.1f} ms, moto {theirs.percentile_ms(50):.1f} ms; "
            f"in-process p99 {limit.percentile_us(99):.1f} us"
        )
        results += [
            Result(NAME, f"{op} req/s ({clients}) vs moto", ours.rate, "/s", theirs.rate, "moto server",
                   Target(">=", 3, on="ratio"), note=note),
            Result(NAME, f"{op} req/s ({clients}) vs the limit", ours.rate, "/s", limit.rate,
                   "in-process AESGCM, 1 thread"),
            Result(NAME, f"{op} p99 latency ({clients})", ours.percentile_ms(99), "ms",
                   theirs.percentile_ms(99), "moto server", note=p_note),
        ]  # fmt: skip
    return results
