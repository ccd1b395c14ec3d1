"""Shared fixtures.

Unit tests run on SQLite with Dramatiq's StubBroker and an injected clock.
When KMS_TEST_DATABASE_URL / KMS_TEST_REDIS_URL are set (CI sets them), the
database-backed tests run on PostgreSQL too and integration tests use that
Redis; they fail, not skip, if those servers are unreachable.
"""

from __future__ import annotations

import os

os.environ.setdefault("KMS_BROKER", "stub")  # before workers/ declares its actors

import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from sqlalchemy import create_engine, text

import workers.app  # noqa: F401  (stub broker + actors)
from kms.clock import FakeClock, SystemClock
from kms.crypto.envelope import RootKeyring, hash_token, new_api_token
from kms.settings import Settings
from models import repo
from models.db import Database
from models.migrate import upgrade
from workers import runtime as worker_runtime
from workers.runtime import Runtime

TEST_DATABASE_URL = os.environ.get("KMS_TEST_DATABASE_URL") or None
TEST_REDIS_URL = os.environ.get("KMS_TEST_REDIS_URL") or None
BACKENDS = ["sqlite"] + (["postgresql"] if TEST_DATABASE_URL else [])

TABLES = [
    "audit_events",
    "idempotency_records",
    "key_materials",
    "key_tags",
    "keys",
    "operations",
    "timers",
    "api_tokens",
    "projects",
    "wrapping_keys",
    "import_payloads",
    "batches",
]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "kms.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_ready() -> str:
    assert TEST_DATABASE_URL, "KMS_TEST_DATABASE_URL is not set"
    engine = create_engine(TEST_DATABASE_URL)
    with engine.begin() as conn:  # a clean schema for this run
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    upgrade(TEST_DATABASE_URL)
    return TEST_DATABASE_URL


def truncate_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    if request.param == "sqlite":
        target = tmp_path / "kms.db"
        shutil.copy(sqlite_template, target)
        return f"sqlite:///{target}"
    url = request.getfixturevalue("postgres_ready")
    truncate_postgres(url)
    return str(url)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(SystemClock().now())


@pytest.fixture
def root_key_b64() -> str:
    import base64

    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def keyring(root_key_b64: str) -> RootKeyring:
    import base64

    return RootKeyring([base64.b64decode(root_key_b64)])


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    # A short horizon: unit tests move the fake clock and sweep, instead of waiting
    # for delayed messages.
    return Settings(
        data_dir=tmp_path,
        database_url=db_url,
        seconds_per_day=1.0,
        timer_horizon_s=1.0,
        requeue_after_s=30.0,
        operation_lease_s=30.0,
        wrapping_pool_size=1,
    )


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url)
    yield database
    database.dispose()


@pytest.fixture
def stub_broker() -> Iterator[dramatiq.Broker]:
    broker = dramatiq.get_broker()
    broker.flush_all()
    for queue in list(broker.dead_letters_by_queue):  # type: ignore[attr-defined]
        broker.dead_letters_by_queue[queue].clear()  # type: ignore[attr-defined]
    yield broker
    broker.flush_all()


@pytest.fixture
def rt(settings: Settings, db: Database, keyring: RootKeyring, clock: FakeClock) -> Iterator[Runtime]:
    runtime = Runtime(settings=settings, db=db, keyring=keyring, clock=clock)
    worker_runtime.install(runtime)
    yield runtime
    worker_runtime.install(None)


@pytest.fixture
def stub_worker(stub_broker: dramatiq.Broker, rt: Runtime) -> Iterator[dramatiq.Worker]:
    worker = dramatiq.Worker(stub_broker, worker_timeout=20, worker_threads=4)
    worker.start()
    yield worker
    worker.stop()


def join_all(broker: dramatiq.Broker) -> None:
    """Wait until every queue of the stub broker is empty (fails on dead letters)."""
    for _ in range(3):  # work on one queue may enqueue on another
        for queue in sorted(broker.get_declared_queues()):
            broker.join(queue, timeout=30_000)  # type: ignore[call-arg]


def make_token(db: Database, project: str, role: str, now: Any) -> str:
    token = new_api_token()
    with db.write() as s:
        repo.add_token(s, project=project, role=role, token_hash=hash_token(token), now=now)
    return token


@dataclass
class Api:
    """A test client for the in-process app, with one token per kind of caller."""

    client: Any
    broker: dramatiq.Broker
    member: str
    other: str  # member of another project
    admin: str
    service: str

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.member}"}

    async def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> tuple[int, Any]:
        headers = {**self.auth(token), **kw.pop("headers", {})}
        resp = await self.client.request(method, path, headers=headers, **kw)
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body

    async def settle(self) -> None:
        import asyncio

        await asyncio.get_running_loop().run_in_executor(None, join_all, self.broker)

    async def create_key(self, token: str | None = None, **body: Any) -> dict[str, Any]:
        body.setdefault("name", "test-key")
        body.setdefault("key_spec", "AES_256")
        status, answer = await self.call("POST", "/v1/keys", token, json=body)
        assert status == 202, answer
        await self.settle()
        _, key = await self.call("GET", f"/v1/keys/{answer['key']['id']}", token)
        return key

    async def command(
        self, key_id: str, action: str, token: str | None = None, **body: Any
    ) -> tuple[int, Any]:
        status, answer = await self.call("POST", f"/v1/keys/{key_id}/{action}", token, json=body or None)
        if status == 202:
            await self.settle()
            _, op = await self.call("GET", f"/v1/operations/{answer['operation']['id']}", token)
            return status, op
        return status, answer


@pytest.fixture
async def api(
    aiohttp_client: Any, rt: Runtime, stub_broker: dramatiq.Broker, stub_worker: Any
) -> AsyncIterator[Api]:
    from web.app import create_app
    from web.context import Services
    from web.queue import Enqueuer

    svc = Services(
        settings=rt.settings,
        db=Database(rt.settings.database_url),
        keyring=rt.keyring,
        clock=rt.clock,
        queue=Enqueuer(stub_broker),
    )
    client = await aiohttp_client(create_app(svc))
    now = rt.clock.now()
    yield Api(
        client=client,
        broker=stub_broker,
        member=make_token(rt.db, "alpha", "member", now),
        other=make_token(rt.db, "beta", "member", now),
        admin=make_token(rt.db, "alpha", "admin", now),
        service=make_token(rt.db, "platform", "service", now),
    )


# --- whole-service fixtures (integration and end-to-end) ------------------------------------


@dataclass
class Served:
    """A running `kms serve` subprocess."""

    url: str
    data_dir: Path
    env: dict[str, str]
    proc: Any
    log_path: Path
    member: str = ""
    admin: str = ""

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.member}"}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int | None = None, timeout: float = 30.0) -> float:
        """Send SIGTERM (or ``sig``); return the seconds it took to exit."""
        import signal
        import time

        if self.proc.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.proc.send_signal(sig or signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout + 10)
        except Exception:
            self.proc.kill()
            raise
        return time.monotonic() - started


def start_serve(data_dir: Path, extra_env: dict[str, str] | None = None, timeout: float = 60) -> Served:
    import json
    import subprocess
    import sys
    import time
    import urllib.request

    from kms.supervisor import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KMS_")}
    env.update(
        {
            "KMS_DATA_DIR": str(data_dir),
            "KMS_PORT": str(port),
            "KMS_SECONDS_PER_DAY": "1",
            "KMS_SWEEP_INTERVAL_S": "1",
            "KMS_LOG_LEVEL": "INFO",
        }
    )
    env.update(extra_env or {})
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"serve-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 (the process outlives this function)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kms.cli", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"kms serve exited early:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as resp:
                if resp.status == 200:
                    break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise AssertionError(f"kms serve not ready in {timeout}s:\n{log_path.read_text()}")
    tokens_path = data_dir / "tokens.json"
    served = Served(url=url, data_dir=data_dir, env=env, proc=proc, log_path=log_path)
    if tokens_path.exists():
        tokens = json.loads(tokens_path.read_text())
        served.member, served.admin = tokens["member"], tokens["admin"]
    return served


@pytest.fixture
def serve_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Served] = []

    def factory(extra_env: dict[str, str] | None = None, data_dir: Path | None = None) -> Served:
        served = start_serve(data_dir or tmp_path / "data", extra_env)
        started.append(served)
        return served

    yield factory
    for served in started:
        if served.proc.poll() is None:
            served.stop()


@pytest.fixture(params=["embedded"] + (["external"] if TEST_REDIS_URL else []))
def service_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Embedded SQLite + Redis, or (when configured) the real PostgreSQL and Redis."""
    if request.param == "embedded":
        return {}
    import base64
    import uuid

    env = {
        "KMS_REDIS_URL": str(TEST_REDIS_URL),
        "KMS_QUEUE_NAMESPACE": f"kms-test-{uuid.uuid4().hex[:8]}",
        "KMS_ROOT_KEY": base64.b64encode(os.urandom(32)).decode(),
    }
    if TEST_DATABASE_URL:
        url = request.getfixturevalue("postgres_ready")
        truncate_postgres(url)
        env["KMS_DATABASE_URL"] = url
    return env
