"""Knobs of a benchmark run (``python -m bench --help``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Options:
    concurrency: int = 50
    #: accept: measured POST /v1/keys requests (after a warm-up), and the time cap
    accept_requests: int = 5_000
    accept_warmup: int = 300
    #: the trivial baseline is much faster: more requests, so its run lasts over a second
    accept_baseline_requests: int = 20_000
    accept_time_cap_s: float = 60.0
    #: e2e: AES_256 creates submitted, and the time cap for them all to be ACTIVE
    e2e_keys: int = 3_000
    e2e_time_cap_s: float = 90.0
    #: rsa: seconds of cryptography's own key generation (half before, half after the service's
    #: run), RSA_4096 creates submitted, time cap. RSA key generation time varies a lot from
    #: key to key, so both sides need about 100 keys or more for a ratio within ~10 %.
    rsa_limit_s: float = 40.0
    rsa_keys: int = 120
    rsa_time_cap_s: float = 120.0
    poll_interval_s: float = 0.05
    verbose: bool = False
