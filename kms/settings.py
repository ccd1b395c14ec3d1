"""Settings, read once from the environment (DESIGN §4, §7, §8)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from kms.crypto.envelope import RootKeyError, RootKeyring, new_root_key_b64, parse_root_keys

#: Every setting the service reads, with its default (None = unset). deploy/ tests check
#: that manifests only use names from here.
SETTINGS_VARIABLES: dict[str, str | None] = {
    "KMS_DATA_DIR": ".kms",
    "KMS_HOST": "127.0.0.1",
    "KMS_PORT": "8080",
    "KMS_DATABASE_URL": None,
    "KMS_REDIS_URL": None,
    "KMS_ROOT_KEY": None,
    "KMS_ROOT_KEY_FILE": None,
    "KMS_SECONDS_PER_DAY": "86400",
    "KMS_TIMER_HORIZON_S": "3600",
    "KMS_SWEEP_INTERVAL_S": "5",
    "KMS_TIMER_GRACE_S": "3",
    "KMS_REQUEUE_AFTER_S": "15",
    "KMS_OPERATION_LEASE_S": "30",
    "KMS_WRAPPING_POOL_SIZE": "8",
    "KMS_RATE_LIMIT_RPS": "2000",
    "KMS_RATE_LIMIT_BURST": "4000",
    "KMS_MAX_KEYS_PER_PROJECT": "1000000",
    "KMS_MAX_IN_FLIGHT_PER_PROJECT": "50000",
    "KMS_WORKER_PROCESSES": "2",
    "KMS_WORKER_THREADS": "8",
    "KMS_QUEUE_NAMESPACE": "kms",
    "KMS_LOG_FORMAT": "text",
    "KMS_LOG_LEVEL": "INFO",
}


class SettingsError(ValueError):
    """A setting is missing or malformed; the message says which and how to fix it."""


def _number(env: Mapping[str, str], name: str, kind: type[int] | type[float], minimum: float) -> float:
    raw = env.get(name) or SETTINGS_VARIABLES[name]
    assert raw is not None
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise SettingsError(f"{name}={raw!r} must be at least {minimum}")
    return value


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".kms")
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str = ""
    redis_url: str | None = None
    root_key_b64: str | None = field(default=None, repr=False)
    root_key_file: Path | None = None
    seconds_per_day: float = 86400.0
    timer_horizon_s: float = 3600.0
    sweep_interval_s: float = 5.0
    timer_grace_s: float = 3.0
    requeue_after_s: float = 15.0
    operation_lease_s: float = 30.0
    wrapping_pool_size: int = 8
    rate_limit_rps: float = 2000.0
    rate_limit_burst: float = 4000.0
    max_keys_per_project: int = 1_000_000
    max_in_flight_per_project: int = 50_000
    worker_processes: int = 2
    worker_threads: int = 8
    queue_namespace: str = "kms"
    log_format: str = "text"
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        data_dir = Path(env.get("KMS_DATA_DIR") or ".kms")
        db_url = env.get("KMS_DATABASE_URL") or f"sqlite:///{(data_dir / 'kms.db').resolve()}"
        log_format = (env.get("KMS_LOG_FORMAT") or "text").lower()
        if log_format not in ("text", "json"):
            raise SettingsError(f"KMS_LOG_FORMAT={log_format!r}: use text or json")
        return cls(
            data_dir=data_dir,
            host=env.get("KMS_HOST") or "127.0.0.1",
            port=int(_number(env, "KMS_PORT", int, 0)),
            database_url=db_url,
            redis_url=env.get("KMS_REDIS_URL") or None,
            root_key_b64=env.get("KMS_ROOT_KEY") or None,
            root_key_file=Path(env["KMS_ROOT_KEY_FILE"]) if env.get("KMS_ROOT_KEY_FILE") else None,
            seconds_per_day=_number(env, "KMS_SECONDS_PER_DAY", float, 0.001),
            timer_horizon_s=_number(env, "KMS_TIMER_HORIZON_S", float, 1),
            sweep_interval_s=_number(env, "KMS_SWEEP_INTERVAL_S", float, 0.1),
            timer_grace_s=_number(env, "KMS_TIMER_GRACE_S", float, 0),
            requeue_after_s=_number(env, "KMS_REQUEUE_AFTER_S", float, 1),
            operation_lease_s=_number(env, "KMS_OPERATION_LEASE_S", float, 1),
            wrapping_pool_size=int(_number(env, "KMS_WRAPPING_POOL_SIZE", int, 0)),
            rate_limit_rps=_number(env, "KMS_RATE_LIMIT_RPS", float, 0.001),
            rate_limit_burst=_number(env, "KMS_RATE_LIMIT_BURST", float, 1),
            max_keys_per_project=int(_number(env, "KMS_MAX_KEYS_PER_PROJECT", int, 1)),
            max_in_flight_per_project=int(_number(env, "KMS_MAX_IN_FLIGHT_PER_PROJECT", int, 1)),
            worker_processes=int(_number(env, "KMS_WORKER_PROCESSES", int, 1)),
            worker_threads=int(_number(env, "KMS_WORKER_THREADS", int, 1)),
            queue_namespace=env.get("KMS_QUEUE_NAMESPACE") or "kms",
            log_format=log_format,
            log_level=(env.get("KMS_LOG_LEVEL") or "INFO").upper(),
        )

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def day_s(self) -> float:
        return self.seconds_per_day

    @property
    def generated_root_key_path(self) -> Path:
        return self.data_dir / "root.key"

    def load_root_keyring(self, *, allow_generate: bool = False) -> RootKeyring:
        """The root keys: KMS_ROOT_KEY, else KMS_ROOT_KEY_FILE, else (embedded default only)
        a key generated once into the data directory with mode 0600."""
        if self.root_key_b64:
            return RootKeyring(parse_root_keys(self.root_key_b64))
        if self.root_key_file:
            try:
                text = self.root_key_file.read_text()
            except OSError as exc:
                raise RootKeyError(
                    f"cannot read KMS_ROOT_KEY_FILE {self.root_key_file}: {exc.strerror}"
                ) from None
            return RootKeyring(parse_root_keys(text))
        path = self.generated_root_key_path
        if path.exists():
            return RootKeyring(parse_root_keys(path.read_text()))
        if not allow_generate:
            raise RootKeyError(
                "no root key: set KMS_ROOT_KEY (base64 of 32 random bytes, e.g. from "
                "`openssl rand -base64 32`) or KMS_ROOT_KEY_FILE"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(new_root_key_b64() + "\n")
        return RootKeyring(parse_root_keys(path.read_text()))
