"""Start and stop the processes a benchmark talks to, all on 127.0.0.1.

* :class:`KmsServer` runs ``kms serve`` (the embedded default: SQLite, embedded
  Redis, web, workers, scheduler) in a fresh temporary ``KMS_DATA_DIR`` on a free
  port, waits for ``/readyz``, reads the member token and stops it with SIGTERM.
* :class:`BaselineServer` runs :mod:`bench.baseline_server`, a trivial aiohttp
  handler, in its own process: the HTTP ceiling the front door is compared with.
* :class:`MotoServer` runs moto's AWS mock server (``moto[server]``, the ``bench``
  extra) as another service's KMS to compare with.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO

HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 40.0

#: Variables that would point ``kms serve`` at something other than its embedded
#: SQLite and Redis, or at another root key: a benchmark always runs self-contained.
_FOREIGN_VARIABLES = (
    "KMS_DATABASE_URL",
    "KMS_REDIS_URL",
    "KMS_ROOT_KEY",
    "KMS_ROOT_KEY_FILE",
    "KMS_PORT",
    "KMS_HOST",
)


class HarnessError(RuntimeError):
    """A process the benchmark needs did not start or answer."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 (loopback only)
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def call_json(
    url: str, body: object, headers: dict[str, str] | None = None, timeout_s: float = 10.0
) -> tuple[int, dict[str, object]]:
    """One JSON POST outside the measured runs (set-up and checks): (status, answer)."""
    request = urllib.request.Request(  # noqa: S310 (loopback only)
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:  # noqa: S310 (loopback only)
            status, raw = int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        answer = json.loads(raw) if raw else {}
    except ValueError:
        answer = {"raw": raw[:200].decode(errors="replace")}
    return status, answer if isinstance(answer, dict) else {"value": answer}


def _kms_argv() -> list[str]:
    script = Path(sys.executable).with_name("kms")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "kms.cli"]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: [state, ppid, ...]."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (the parts of ``kms serve`` run in their own sessions)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if len(fields) > 1:
                parents[int(entry.name)] = int(fields[1])
    found = [root]
    for pid in found:  # grows while iterating: breadth-first over children
        found.extend(child for child, parent in parents.items() if parent == pid)
    return found


def cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    if len(fields) < 13:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime + stime


#: The key of :meth:`KmsServer.cpu_by_part` holding the whole machine's busy CPU seconds.
MACHINE = "(machine)"


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (user, nice, system, irq, softirq)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / _CLK_TCK


def part_name(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    words = [a.decode(errors="replace") for a in argv if a]
    joined = " ".join(words)
    if "redis-server" in joined:
        return "redis"
    if "dramatiq" in joined or " worker" in joined:
        return "workers"
    for part in ("serve", "web", "scheduler"):
        if part in words:
            return part
    return Path(words[0]).name if words else "?"


def _stop_process(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """SIGTERM, wait; SIGKILL it and every descendant if it does not stop. True if clean."""
    if proc.poll() is not None:
        return True
    tree = process_tree(proc.pid)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
        return True
    except subprocess.TimeoutExpired:
        pass
    for pid in set(tree) | set(process_tree(proc.pid)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=10)
    return False


class KmsServer:
    """``kms serve`` in a temporary data directory. Use as a context manager."""

    def __init__(self, *, name: str = "kms", env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"kms-bench-{name}-"))
        self.log_path = self.data_dir / "serve.log"
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.member_token = ""
        self.admin_token = ""
        self.startup_s = 0.0
        self.stopped_cleanly: bool | None = None
        self.stop_s = 0.0

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_VARIABLES}
        env.update(
            {
                "KMS_DATA_DIR": str(self.data_dir),
                "KMS_SECONDS_PER_DAY": env.get("KMS_SECONDS_PER_DAY", "86400"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def start(self) -> KmsServer:
        started = time.perf_counter()
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [*_kms_argv(), "serve", "--port", str(self.port)],
            cwd=self.data_dir,
            env=self.environment(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        tokens_path = self.data_dir / "tokens.json"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError(
                    f"kms serve exited with code {self.proc.returncode}:\n{_tail(self.log_path)}"
                )
            if tokens_path.exists() and http_ok(f"{self.base_url}/readyz"):
                try:
                    tokens = json.loads(tokens_path.read_text())
                except (OSError, ValueError):
                    tokens = {}
                if tokens.get("member"):
                    self.member_token = str(tokens["member"])
                    self.admin_token = str(tokens.get("admin", ""))
                    self.startup_s = time.perf_counter() - started
                    return self
            time.sleep(0.1)
        self.stop()
        raise HarnessError(f"kms serve was not ready within {START_TIMEOUT_S:.0f}s:\n{_tail(self.log_path)}")

    def pids(self) -> list[int]:
        """The supervisor and its descendants (web, workers, scheduler, Redis)."""
        return process_tree(self.proc.pid) if self.proc is not None else []

    def cpu_by_part(self) -> dict[str, float]:
        """CPU seconds used so far by each part of the server, summed over its processes."""
        totals: dict[str, float] = {}
        for pid in self.pids():
            part = part_name(pid)
            totals[part] = totals.get(part, 0.0) + cpu_seconds(pid)
        totals[MACHINE] = machine_busy_seconds()
        return totals

    def stop(self) -> None:
        if self.proc is not None:
            started = time.perf_counter()
            self.stopped_cleanly = _stop_process(self.proc, STOP_TIMEOUT_S)
            self.stop_s = time.perf_counter() - started
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 30) -> str:
        return _tail(self.log_path, lines)

    def cleanup(self) -> None:
        if os.environ.get("BENCH_KEEP_DATA"):
            print(f"  (kept {self.data_dir})", flush=True)
            return
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> KmsServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        how = "after SIGTERM" if self.stopped_cleanly else f"NOT within {STOP_TIMEOUT_S:.0f}s; killed"
        print(f"[{self.name}]   server stopped in {self.stop_s:.1f}s {how}", flush=True)
        self.cleanup()


class BaselineServer:
    """The trivial aiohttp handler of :mod:`bench.baseline_server` in a subprocess."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> BaselineServer:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.baseline_server", "--port", str(self.port)],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError(f"the baseline server exited with code {self.proc.returncode}")
            if http_ok(f"{self.base_url}/healthz"):
                return self
            time.sleep(0.05)
        self.stop()
        raise HarnessError("the baseline server did not start within 20s")

    def stop(self) -> None:
        if self.proc is not None:
            _stop_process(self.proc, 10)

    def __enter__(self) -> BaselineServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class MotoServer:
    """moto's server (``python -m moto.server``) on loopback in a subprocess, its log in a
    temporary file. Its KMS speaks the AWS JSON protocol: ``POST /`` with ``X-Amz-Target``."""

    #: moto checks no signature; it only reads the region and access key from this header.
    AUTHORIZATION = (
        "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/kms/aws4_request, "
        "SignedHeaders=host, Signature=x"
    )

    def __init__(self) -> None:
        self.port = free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = Path(tempfile.mkdtemp(prefix="kms-bench-moto-"))
        self.log_path = self.dir / "moto.log"
        self._log: IO[bytes] | None = None
        self.startup_s = 0.0

    @staticmethod
    def available() -> bool:
        import importlib.util

        return importlib.util.find_spec("moto") is not None and importlib.util.find_spec("flask") is not None

    def headers(self, target: str) -> dict[str, str]:
        return {
            "X-Amz-Target": f"TrentService.{target}",
            "Content-Type": "application/x-amz-json-1.1",
            "Authorization": self.AUTHORIZATION,
        }

    def call(self, target: str, body: dict[str, object], timeout_s: float = 10.0) -> dict[str, object]:
        """One KMS call (outside the measured runs); raises :class:`HarnessError` unless 200."""
        status, answer = call_json(f"{self.base_url}/", body, self.headers(target), timeout_s)
        if status != 200:
            raise HarnessError(f"moto {target} answered {status}: {str(answer)[:300]}")
        return answer

    def start(self) -> MotoServer:
        if not self.available():
            raise HarnessError(
                "moto is not installed: pip install -e '.[bench]' (or pip install 'moto[server]')"
            )
        started = time.perf_counter()
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({"AWS_DEFAULT_REGION": "us-east-1", "PYTHONUNBUFFERED": "1"})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)],
            cwd=self.dir,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError(f"moto exited with code {self.proc.returncode}:\n{_tail(self.log_path)}")
            try:
                self.call("ListKeys", {}, timeout_s=2.0)
            except (OSError, HarnessError):
                time.sleep(0.1)
                continue
            self.startup_s = time.perf_counter() - started
            return self
        self.stop()
        raise HarnessError(f"moto was not ready within {START_TIMEOUT_S:.0f}s:\n{_tail(self.log_path)}")

    def cpu_by_part(self) -> dict[str, float]:
        totals = {"moto": sum(cpu_seconds(pid) for pid in process_tree(self.proc.pid))} if self.proc else {}
        totals[MACHINE] = machine_busy_seconds()
        return totals

    def stop(self) -> None:
        if self.proc is not None:
            _stop_process(self.proc, 10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
