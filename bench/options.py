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
    #: import: EXTERNAL AES_256 keys; each gets one measured import-parameters call (from the
    #: pool, sized to hold them all) and then one import, end to end
    import_keys: int = 400
    #: import-parameters calls before the measured ones (connections, caches); they consume pairs too
    import_warmup: int = 40
    #: import-parameters clients (issue 3: p99 < 20 ms at 20 concurrent clients)
    import_concurrency: int = 20
    #: wrapping key spec asked for (the pool's answer does not depend on it; RSA_2048 fills fastest)
    import_wrapping_spec: str = "RSA_2048"
    #: baseline: fresh RSA_4096 pairs generated in-process, one per "request", bounded in count and time
    import_baseline_keys: int = 40
    import_baseline_s: float = 20.0
    #: bound on waiting for the wrapping key pool to fill, and on each measured phase
    import_pool_fill_cap_s: float = 180.0
    import_time_cap_s: float = 120.0
    #: crypto: measured encrypt and decrypt requests to kms serve and to moto (after a warm-up each)
    crypto_requests: int = 10_000
    crypto_moto_requests: int = 3_000
    crypto_warmup: int = 300
    crypto_time_cap_s: float = 60.0
    #: the measured requests are split into this many rounds, moto's and kms's runs alternating
    crypto_rounds: int = 2
    #: crypto: bytes of plaintext per request (a data key), and the in-process limit's bounds
    crypto_plaintext_bytes: int = 32
    crypto_inprocess_ops: int = 200_000
    crypto_inprocess_s: float = 3.0
    poll_interval_s: float = 0.05
    verbose: bool = False
