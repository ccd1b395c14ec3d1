"""``python -m bench [accept] [e2e] [rsa] [import] [crypto] [batch]``: run the benchmarks (all
by default) and print a results table: metric, value, baseline measured in the same
run, ratio, target, met?. Targets are reported, not asserted; the exit code is
non-zero only if a benchmark could not run.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable

from bench import accept, batches, crypto, e2e, imports, rsa
from bench.options import Options
from bench.report import Result, print_notes, print_table

BENCHES: dict[str, Callable[[Options], list[Result]]] = {
    accept.NAME: accept.run,
    e2e.NAME: e2e.run,
    rsa.NAME: rsa.run,
    imports.NAME: imports.run,
    crypto.NAME: crypto.run,
    batches.NAME: batches.run,
}


def parse(argv: list[str] | None) -> tuple[list[str], Options]:
    d = Options()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("benches", nargs="*", metavar="BENCH",
                        help=f"which to run: {', '.join(BENCHES)} (default: all)")  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=d.concurrency, help="concurrent HTTP clients")
    parser.add_argument("--accept-requests", type=int, default=d.accept_requests)
    parser.add_argument("--e2e-keys", type=int, default=d.e2e_keys)
    parser.add_argument("--rsa-keys", type=int, default=d.rsa_keys)
    parser.add_argument("--rsa-limit-seconds", type=float, default=d.rsa_limit_s)
    parser.add_argument("--import-keys", type=int, default=d.import_keys,
                        help="EXTERNAL keys: measured import-parameters calls and imports")  # fmt: skip
    parser.add_argument("--crypto-requests", type=int, default=d.crypto_requests,
                        help="measured encrypt (and decrypt) requests to kms serve")  # fmt: skip
    parser.add_argument("--crypto-moto-requests", type=int, default=d.crypto_moto_requests,
                        help="measured encrypt (and decrypt) requests to moto")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test of the benchmarks")
    args = parser.parse_args(argv)
    unknown = [b for b in args.benches if b not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    opts = Options(
        concurrency=args.concurrency,
        accept_requests=args.accept_requests,
        e2e_keys=args.e2e_keys,
        rsa_keys=args.rsa_keys,
        rsa_limit_s=args.rsa_limit_seconds,
        import_keys=args.import_keys,
        crypto_requests=args.crypto_requests,
        crypto_moto_requests=args.crypto_moto_requests,
    )
    if args.quick:
        opts = Options(concurrency=opts.concurrency, accept_requests=500, accept_warmup=50,
                       accept_baseline_requests=2_000, e2e_keys=300,
                       rsa_keys=6, rsa_limit_s=5.0, import_keys=60, import_warmup=10,
                       import_baseline_keys=6, import_baseline_s=5.0, crypto_requests=1_000,
                       crypto_moto_requests=300, crypto_warmup=50, crypto_inprocess_ops=20_000,
                       crypto_inprocess_s=1.0)  # fmt: skip
    chosen = list(dict.fromkeys(args.benches)) or list(BENCHES)
    return chosen, opts


def main(argv: list[str] | None = None) -> int:
    chosen, opts = parse(argv)
    started = time.perf_counter()
    results: list[Result] = []
    broken: list[str] = []
    for name in chosen:
        try:
            results.extend(BENCHES[name](opts))
        except Exception as exc:
            broken.append(name)
            print(f"[{name}] could not run: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            traceback.print_exc()
    print()
    print(f"Results ({', '.join(chosen)}; {time.perf_counter() - started:.0f}s in all)")
    print()
    print_table(results)
    print()
    print_notes(results)
    if broken:
        print(f"\nnot run: {', '.join(broken)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
