"""The client side of the `kms` command, for batch jobs and callers that poll
(`kms keys …`, `kms batch status`, `kms op status`). Talks HTTP: KMS_URL, KMS_TOKEN."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any, TextIO

from web.client import ApiError, KmsClient

BATCH_SIZE = 1000
PARALLEL_BATCHES = 4


class Progress:
    """A progress bar on a terminal, a line every few seconds otherwise."""

    def __init__(self, total: int, out: TextIO = sys.stderr) -> None:
        self.total, self.out, self.tty = total, out, out.isatty()
        self._last = 0.0

    def show(self, done: int, failed: int, final: bool = False) -> None:
        now = time.monotonic()
        if not (final or self.tty or now - self._last >= 5):
            return
        self._last = now
        width = 30
        filled = int(width * done / max(1, self.total))
        line = f"[{'#' * filled}{'-' * (width - filled)}] {done}/{self.total} done, {failed} failed"
        if self.tty:
            self.out.write("\r" + line + ("\n" if final else ""))
        else:
            self.out.write(line + "\n")
        self.out.flush()


async def _wait_batches(kms: KmsClient, batch_ids: list[str], total: int, rejected: int) -> tuple[int, int]:
    progress = Progress(total)
    while True:
        states = await asyncio.gather(*(kms.get_batch(b, wait_s=2) for b in batch_ids))
        succeeded = sum(s["counts"]["SUCCEEDED"] for s in states)
        failed = sum(s["counts"]["FAILED"] for s in states) + rejected
        finished = all(s["done"] for s in states)
        progress.show(succeeded + failed, failed, final=finished)
        if finished:
            return succeeded, failed


async def keys_create(kms: KmsClient, args: argparse.Namespace) -> int:
    if args.count < 1:
        raise SystemExit("kms keys create: --count must be at least 1")
    params: dict[str, Any] = {"key_spec": args.spec}
    if args.usage:
        params["key_usage"] = args.usage
    if args.origin:
        params["origin"] = args.origin
    items = [
        {"command": "create_key", "params": {**params, "name": f"{args.name_prefix}{i}"}}
        for i in range(args.count)
    ]
    chunks = [items[i : i + BATCH_SIZE] for i in range(0, len(items), BATCH_SIZE)]
    sem = asyncio.Semaphore(PARALLEL_BATCHES)

    async def submit(chunk: list[dict[str, Any]]) -> dict[str, Any]:
        async with sem:
            return await kms.submit_batch(chunk)

    started = time.monotonic()
    batches = await asyncio.gather(*(submit(c) for c in chunks))
    rejected = sum(b["rejected"] for b in batches)
    for batch in batches:
        for item in batch["items"]:
            if item["error"]:
                print(
                    f"item {item['index']} of batch {batch['id']}: {item['error']['code']}: "
                    f"{item['error']['message']}",
                    file=sys.stderr,
                )
    succeeded, failed = await _wait_batches(kms, [b["id"] for b in batches], args.count, rejected)
    elapsed = time.monotonic() - started
    print(
        f"{succeeded} keys created, {failed} failed, in {elapsed:.1f}s "
        f"(batches: {', '.join(b['id'] for b in batches)})"
    )
    return 0 if failed == 0 else 1


async def keys_list(kms: KmsClient, args: argparse.Namespace) -> int:
    keys = [
        k async for k in kms.list_keys(state=args.state or "", manager=args.manager or "", q=args.q or "")
    ]
    if args.json:
        print(json.dumps(keys, indent=2))
        return 0
    print(f"{'ID':36}  {'NAME':24}  {'SPEC':9}  {'STATE':16}  DELETION")
    for key in keys:
        print(
            f"{key['id']:36}  {key['name'][:24]:24}  {key['key_spec']:9}  {key['state']:16}  "
            f"{key['deletion_date'] or ''}"
        )
    print(f"{len(keys)} keys", file=sys.stderr)
    return 0


async def keys_delete(kms: KmsClient, args: argparse.Namespace) -> int:
    items = [
        {"command": "schedule_deletion", "key_id": key_id, "params": {"pending_window_days": args.days}}
        for key_id in args.key_ids
    ]
    batches = [await kms.submit_batch(items[i : i + BATCH_SIZE]) for i in range(0, len(items), BATCH_SIZE)]
    rejected = 0
    for batch in batches:
        for item in batch["items"]:
            if item["error"]:
                rejected += 1
                print(
                    f"{args.key_ids[item['index']]}: {item['error']['code']}: {item['error']['message']}",
                    file=sys.stderr,
                )
    succeeded, failed = await _wait_batches(kms, [b["id"] for b in batches], len(items), rejected)
    print(f"{succeeded} keys scheduled for deletion in {args.days} days, {failed} failed")
    return 0 if failed == 0 else 1


async def batch_status(kms: KmsClient, args: argparse.Namespace) -> int:
    while True:
        batch = await kms.get_batch(args.batch_id, wait_s=5 if args.watch else 0)
        counts = batch["counts"]
        print(
            f"batch {batch['id']}: {batch['total']} items, {batch['rejected']} rejected; "
            f"QUEUED {counts['QUEUED']}, RUNNING {counts['RUNNING']}, SUCCEEDED {counts['SUCCEEDED']}, "
            f"FAILED {counts['FAILED']}; {'done' if batch['done'] else 'in progress'}"
        )
        if batch["done"] or not args.watch:
            return 0 if counts["FAILED"] == 0 and batch["rejected"] == 0 else 1


async def op_status(kms: KmsClient, args: argparse.Namespace) -> int:
    op = await (
        kms.wait_operation(args.operation_id, timeout_s=3600)
        if args.watch
        else kms.get_operation(args.operation_id)
    )
    error = op.get("error") or {}
    print(
        f"operation {op['id']} ({op['kind']}, key {op['key_id']}): {op['status']}"
        + (f": {error.get('code')}: {error.get('message')}" if error else "")
    )
    return 1 if op["status"] == "FAILED" else 0


async def ops_queues(kms: KmsClient, args: argparse.Namespace) -> int:
    view = await kms.request("GET", "/v1/ops/queues")
    if args.json:
        print(json.dumps(view, indent=2))
        return 0
    print(f"{'QUEUE':10} {'READY':>8} {'DELAYED':>8} {'DEAD':>6} {'OLDEST(s)':>10}")
    for q in view["queues"]:
        age = "" if q["oldest_ready_age_s"] is None else f"{q['oldest_ready_age_s']:.1f}"
        print(f"{q['name']:10} {q['ready']:>8} {q['delayed']:>8} {q['dead_lettered']:>6} {age:>10}")
    alive = [w for w in view["workers"] if w["alive"]]
    print(f"workers: {len(alive)} alive of {len(view['workers'])} seen")
    timers = view["timers"]
    print(
        f"timers: {timers['pending_deletions']} deletions, {timers['material_expiries']} material expiries, "
        f"next {timers['next_deadline'] or '-'}"
    )
    return 0


async def ops_dead_letters(kms: KmsClient, args: argparse.Namespace) -> int:
    params = {"queue": args.queue} if args.queue else {}
    letters = (await kms.request("GET", "/v1/ops/dead-letters", params=params))["dead_letters"]
    if args.json:
        print(json.dumps(letters, indent=2))
        return 0
    for d in letters:
        error = d["error"] or {}
        print(
            f"{d['message_id']}  {d['queue']:9} {d['actor']:18} op {d['operation_id'] or '-'}  "
            f"key {d['key_id'] or '-'}  {error.get('code') or ''}  "
            f"attempts {d['attempts']}  {d['failed_at'] or ''}"
        )
    print(f"{len(letters)} dead letters", file=sys.stderr)
    return 0


async def ops_requeue(kms: KmsClient, args: argparse.Namespace) -> int:
    done = await kms.request("POST", f"/v1/ops/dead-letters/{args.message_id}/requeue")
    print(
        f"requeued {done['message_id']} on {done['queue']}"
        + (f" (operation {done['operation_id']})" if done.get("operation_id") else "")
    )
    return 0


def add_parsers(sub: Any) -> None:
    keys = sub.add_parser("keys", help="manage keys over HTTP (KMS_URL, KMS_TOKEN)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    p = keys_sub.add_parser("create", help="create many keys through batches, with a progress bar")
    p.add_argument("--spec", default="AES_256")
    p.add_argument("--usage", default=None)
    p.add_argument("--origin", default=None, choices=["VNGCLOUD", "EXTERNAL"])
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--name-prefix", default="key-")
    p.set_defaults(client=keys_create)
    p = keys_sub.add_parser("list", help="list keys (a table, or --json)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--state", default=None)
    p.add_argument("--manager", default=None, choices=["CUSTOMER", "VNGCLOUD"])
    p.add_argument("-q", default=None, help="name contains, or id prefix")
    p.set_defaults(client=keys_list)
    p = keys_sub.add_parser("delete", help="schedule keys for deletion")
    p.add_argument("key_ids", nargs="+", metavar="ID")
    p.add_argument("--days", type=int, default=30, help="waiting period, 7 to 30 days")
    p.set_defaults(client=keys_delete)

    batch = sub.add_parser("batch", help="batches")
    batch_sub = batch.add_subparsers(dest="batch_command", required=True)
    p = batch_sub.add_parser("status", help="progress of a batch")
    p.add_argument("batch_id")
    p.add_argument("--watch", action="store_true", help="until it is done")
    p.set_defaults(client=batch_status)

    ops = sub.add_parser("ops", help="for the ops team (admin token)")
    ops_sub = ops.add_subparsers(dest="ops_command", required=True)
    p = ops_sub.add_parser("queues", help="queues, workers and timers")
    p.add_argument("--json", action="store_true")
    p.set_defaults(client=ops_queues)
    p = ops_sub.add_parser("dead-letters", help="dead-lettered messages")
    p.add_argument("--queue", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(client=ops_dead_letters)
    p = ops_sub.add_parser("requeue", help="requeue a dead letter")
    p.add_argument("message_id")
    p.set_defaults(client=ops_requeue)

    op = sub.add_parser("op", help="operations")
    op_sub = op.add_subparsers(dest="op_command", required=True)
    p = op_sub.add_parser("status", help="status of an operation")
    p.add_argument("operation_id")
    p.add_argument("--watch", action="store_true", help="until it has finished")
    p.set_defaults(client=op_status)


def run(args: argparse.Namespace, url: str, token: str) -> int:
    async def main() -> int:
        async with KmsClient(url, token) as kms:
            return int(await args.client(kms, args))

    try:
        return asyncio.run(main())
    except ApiError as exc:
        print(f"kms: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"kms: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
