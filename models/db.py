"""Engines and sessions.

SQLite (the embedded default) runs in WAL mode with a busy timeout, and every
write transaction starts with ``BEGIN IMMEDIATE`` so that writers queue on the
busy timeout instead of failing when a read transaction upgrades. PostgreSQL
uses ordinary transactions; due rows are claimed with ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session, create_engine

from kms.errors import Unavailable

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_engine(url: str, *, immediate: bool) -> Engine:
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        pool_size=8,
        max_overflow=16,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class WriterGate:
    """Serialises SQLite writers: threads of a process on a lock, processes on an
    ``flock`` of a file beside the database. Waiters sleep in the kernel and wake
    when the holder is done, instead of SQLite's busy handler polling with sleeps
    of up to 100 ms (which made p99 latencies of seconds under load)."""

    def __init__(self, db_path: str) -> None:
        self._path = db_path + ".writelock"
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # never share an flock across fork
            self._fd = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o600)
            self._pid = os.getpid()
        return self._fd

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._lock:
            fd = self._descriptor()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)


@contextmanager
def _no_gate() -> Iterator[None]:
    yield


class Database:
    """One writer engine and one reader engine over the same database."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._gate: WriterGate | None = None
        if self.is_sqlite:
            self.write_engine = _sqlite_engine(url, immediate=True)
            self.read_engine = _sqlite_engine(url, immediate=False)
            path = url.split("///", 1)[1] if "///" in url else ""
            if path and path != ":memory:":
                self._gate = WriterGate(path)
        else:
            self.write_engine = create_engine(
                url, pool_size=pool_size, max_overflow=pool_size * 2, pool_pre_ping=True
            )
            self.read_engine = self.write_engine

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction: committed on success, rolled back on any error."""
        with (
            self._gate.hold() if self._gate else _no_gate(),
            _translate_outage(),
            Session(self.write_engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with (
            _translate_outage(),
            Session(self.read_engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    @contextmanager
    def connect(self) -> Iterator[Any]:
        """A plain read connection (no ORM session) for the hottest reads."""
        with _translate_outage(), self.read_engine.connect() as connection:
            yield connection

    def ping(self) -> None:
        with self.read() as s:
            s.exec(text("SELECT 1"))  # type: ignore[call-overload]

    def dispose(self) -> None:
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()


@contextmanager
def _translate_outage() -> Iterator[None]:
    """A database that cannot be reached is ``Unavailable`` (503), not a stack trace."""
    try:
        yield
    except OperationalError as exc:
        if _is_disconnect(exc):
            raise Unavailable("the database is unavailable; retry shortly") from None
        raise


def _is_disconnect(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    text_ = str(exc.orig).lower() if exc.orig else ""
    return any(s in text_ for s in ("connection", "could not connect", "server closed", "unable to open"))
