"""End to end: `kms serve` as a subprocess, driven over HTTP as a user would.

Runs on the embedded default (SQLite + embedded Redis) and, when CI provides
them, on the real PostgreSQL and Redis (``service_env``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

pytestmark = pytest.mark.e2e


async def call(
    session: aiohttp.ClientSession, served: Any, method: str, path: str, token: str | None = None, **kw: Any
) -> tuple[int, Any]:
    headers = {**served.headers(token), **kw.pop("headers", {})}
    async with session.request(method, served.url + path, headers=headers, **kw) as resp:
        return resp.status, await resp.json()


async def wait_op(session: aiohttp.ClientSession, served: Any, op_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, op = await call(session, served, "GET", f"/v1/operations/{op_id}", headers={"Prefer": "wait=5"})
        op = op.get("operation", op)
        if op["status"] in ("SUCCEEDED", "FAILED"):
            return op
    raise AssertionError(f"operation {op_id} did not finish in {timeout}s")


async def command(session: aiohttp.ClientSession, served: Any, key_id: str, action: str, **body: Any) -> dict:
    status, answer = await call(session, served, "POST", f"/v1/keys/{key_id}/{action}", json=body or None)
    assert status in (200, 202), answer
    op = await wait_op(session, served, answer["operation"]["id"])
    assert op["status"] == "SUCCEEDED", op
    return op


async def test_lifecycle_with_scaled_days(serve_factory: Any, service_env: dict[str, str]) -> None:
    served = serve_factory(service_env)
    async with aiohttp.ClientSession() as session:
        status, answer = await call(
            session,
            served,
            "POST",
            "/v1/keys",
            json={"name": "e2e", "key_spec": "AES_256"},
            headers={"Prefer": "wait=10"},
        )
        assert status == 200 and answer["key"]["state"] == "ACTIVE", answer
        kid = answer["key"]["id"]
        for action, state in [("disable", "DISABLED"), ("enable", "ACTIVE")]:
            await command(session, served, kid, action)
            _, key = await call(session, served, "GET", f"/v1/keys/{kid}")
            assert key["state"] == state
        await command(session, served, kid, "schedule-deletion", pending_window_days=7)
        _, key = await call(session, served, "GET", f"/v1/keys/{kid}")
        assert key["state"] == "PENDING_DELETION"
        await command(session, served, kid, "cancel-deletion")
        _, key = await call(session, served, "GET", f"/v1/keys/{kid}")
        assert key["state"] == "DISABLED" and key["deletion_date"] is None

        submitted = time.monotonic()
        status, answer = await call(
            session, served, "POST", f"/v1/keys/{kid}/schedule-deletion", json={"pending_window_days": 7}
        )
        assert status == 202
        gone_at = None
        while time.monotonic() - submitted < 12:
            status, _ = await call(session, served, "GET", f"/v1/keys/{kid}")
            if status == 404:
                gone_at = time.monotonic() - submitted
                break
            await asyncio.sleep(0.1)
        assert gone_at is not None, "not deleted 12 s after a 7-day (7 s) schedule"
        assert 7.0 <= gone_at <= 9.0, gone_at
        status, ops = await call(session, served, "GET", f"/v1/operations?key_id={kid}")
        assert status == 200 and len(ops["operations"]) == 6  # operations outlive the key


async def test_cancelled_key_stays(serve_factory: Any) -> None:
    served = serve_factory()
    async with aiohttp.ClientSession() as session:
        _, answer = await call(
            session,
            served,
            "POST",
            "/v1/keys",
            json={"name": "keep", "key_spec": "EC_P256"},
            headers={"Prefer": "wait=10"},
        )
        kid = answer["key"]["id"]
        await command(session, served, kid, "schedule-deletion", pending_window_days=7)
        await command(session, served, kid, "cancel-deletion")
        await asyncio.sleep(9)
        status, key = await call(session, served, "GET", f"/v1/keys/{kid}")
        assert status == 200 and key["state"] == "DISABLED"


async def test_token_cli_while_running_and_isolation(serve_factory: Any) -> None:
    served = serve_factory()
    tokens_file = served.data_dir / "tokens.json"
    assert tokens_file.stat().st_mode & 0o777 == 0o600
    out = subprocess.run(
        [sys.executable, "-m", "kms.cli", "token", "create", "--project", "other"],
        env=served.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = out.stdout.strip()
    assert out.stdout == token + "\n" and token.startswith("kms_")
    async with aiohttp.ClientSession() as session:
        _, answer = await call(
            session, served, "POST", "/v1/keys", json={"name": "mine", "key_spec": "AES_256"}
        )
        status, err = await call(session, served, "GET", f"/v1/keys/{answer['key']['id']}", token)
        assert status == 404 and err["error"]["code"] == "NotFound"
        status, listing = await call(session, served, "GET", "/v1/keys", token)
        assert status == 200 and listing["keys"] == []


async def _burst(session: aiohttp.ClientSession, served: Any, n: int, spec: str = "AES_256") -> list[str]:
    sem = asyncio.Semaphore(32)

    async def one(i: int) -> str:
        async with sem:
            status, answer = await call(
                session, served, "POST", "/v1/keys", json={"name": f"burst-{i}", "key_spec": spec}
            )
            assert status == 202, answer
            return str(answer["operation"]["id"])

    return await asyncio.gather(*(one(i) for i in range(n)))


async def _all_finished(session: aiohttp.ClientSession, served: Any, expected: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = {}
        cursor = None
        while True:
            path = "/v1/keys?limit=1000" + (f"&cursor={cursor}" if cursor else "")
            _, page = await call(session, served, "GET", path)
            for key in page["keys"]:
                counts[key["state"]] = counts.get(key["state"], 0) + 1
            cursor = page["next_cursor"]
            if not cursor:
                break
        if counts.get("ACTIVE", 0) == expected:
            return counts
        await asyncio.sleep(1)
    raise AssertionError(f"not all keys ACTIVE after {timeout}s: {counts}")


def _worker_pids(served: Any) -> list[int]:
    """PIDs of the Dramatiq worker processes under this `kms serve`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if "dramatiq workers.app" in cmdline and f"KMS_DATA_DIR={served.data_dir}".encode() in environ:
            pids.append(int(entry.name))
    return sorted(pids)


async def test_worker_sigkill_during_burst(serve_factory: Any) -> None:
    served = serve_factory()
    n = 1000
    async with aiohttp.ClientSession() as session:
        task = asyncio.create_task(_burst(session, served, n))
        await asyncio.sleep(0.5)
        pids = _worker_pids(served)
        assert len(pids) >= 2, pids
        os.kill(pids[-1], signal.SIGKILL)
        op_ids = await task
        counts = await _all_finished(session, served, n, timeout=90)
        assert counts == {"ACTIVE": n}
        ops: list[dict] = []
        cursor = None
        while True:
            path = "/v1/operations?kind=create_key&limit=1000" + (f"&cursor={cursor}" if cursor else "")
            _, page = await call(session, served, "GET", path)
            ops += page["operations"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert sorted(o["id"] for o in ops) == sorted(op_ids)  # one operation per request
        assert all(o["status"] == "SUCCEEDED" for o in ops)
        assert len({o["key_id"] for o in ops}) == n  # each exactly once


async def test_sigterm_then_restart_finishes_everything(serve_factory: Any, tmp_path: Path) -> None:
    data_dir = tmp_path / "restart"
    served = serve_factory(data_dir=data_dir)
    n = 300
    async with aiohttp.ClientSession() as session:
        await _burst(session, served, n, spec="EC_P256")
    took = served.stop()
    assert took < 30, f"stopping took {took:.1f}s"
    served2 = serve_factory(data_dir=data_dir)
    async with aiohttp.ClientSession() as session:
        counts = await _all_finished(session, served2, n, timeout=90)
        assert counts == {"ACTIVE": n}
        for status in ("QUEUED", "RUNNING", "FAILED"):
            _, page = await call(session, served2, "GET", f"/v1/operations?status={status}")
            assert page["operations"] == [], status


async def test_no_secrets_in_database_or_logs(serve_factory: Any) -> None:
    served = serve_factory()
    async with aiohttp.ClientSession() as session:
        status, answer = await call(
            session,
            served,
            "POST",
            "/v1/keys",
            json={"name": "secret-check", "key_spec": "AES_256"},
            headers={"Prefer": "wait=10"},
        )
        assert status == 200
    served.stop()
    root_key = (served.data_dir / "root.key").read_text().strip()
    assert (served.data_dir / "root.key").stat().st_mode & 0o777 == 0o600
    db_bytes = b"".join(p.read_bytes() for p in served.data_dir.glob("kms.db*"))
    log = served.log()
    for secret in (served.member, served.admin, root_key):
        assert secret.encode() not in db_bytes
        assert secret not in log
    # the material itself: decrypt it with the root key and make sure it appears nowhere in plaintext
    import base64

    from kms.crypto.envelope import RootKeyring
    from models.db import Database
    from models.tables import KeyMaterial

    db = Database(f"sqlite:///{served.data_dir / 'kms.db'}")
    with db.read() as s:
        sealed = s.get(KeyMaterial, (answer["key"]["id"], 1)).sealed
    db.dispose()
    material = RootKeyring([base64.b64decode(root_key)]).open(sealed, f"key-material:{answer['key']['id']}:1")
    assert len(material) == 32
    assert material not in db_bytes and material.hex() not in log


async def test_kms_import_cli(serve_factory: Any, tmp_path: Path) -> None:
    # import parameters are valid for one (scaled) day: a minute here, time enough for the CLI
    served = serve_factory({"KMS_SECONDS_PER_DAY": "60"})
    env = {**served.env, "KMS_URL": served.url, "KMS_TOKEN": served.member}
    subprocess.run(["openssl", "rand", "-out", str(tmp_path / "aes.bin"), "32"], check=True)
    subprocess.run(
        [
            "openssl",
            "genpkey",
            "-algorithm",
            "EC",
            "-out",
            str(tmp_path / "ec.pem"),
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ],
        check=True,
        capture_output=True,
    )
    async with aiohttp.ClientSession() as session:
        keys = {}
        for spec in ("AES_256", "EC_P256"):
            status, answer = await call(
                session,
                served,
                "POST",
                "/v1/keys",
                json={"name": spec, "key_spec": spec, "origin": "EXTERNAL"},
                headers={"Prefer": "wait=10"},
            )
            assert answer["key"]["state"] == "PENDING_IMPORT"
            keys[spec] = answer["key"]["id"]

        def kms_import(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "kms.cli", "import", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )

        done = kms_import(
            keys["AES_256"], "--material", str(tmp_path / "aes.bin"), "--wrapping-key-spec", "RSA_2048"
        )
        assert done.returncode == 0, done.stderr
        assert "ACTIVE" in done.stdout
        done = kms_import(
            keys["EC_P256"], "--material", str(tmp_path / "ec.pem"), "--expires-at", "2099-01-01T00:00:00Z"
        )
        assert done.returncode == 1 and "365" in done.stderr  # scaled days: too far ahead
        done = kms_import(keys["EC_P256"], "--material", str(tmp_path / "ec.pem"))
        assert done.returncode == 0, done.stderr
        _, key = await call(session, served, "GET", f"/v1/keys/{keys['EC_P256']}")
        assert key["state"] == "ACTIVE"
        # other material is refused and changes nothing
        subprocess.run(["openssl", "rand", "-out", str(tmp_path / "other.bin"), "32"], check=True)
        done = kms_import(keys["AES_256"], "--material", str(tmp_path / "other.bin"))
        assert done.returncode == 1 and "IncorrectKeyMaterial" in done.stderr


def test_client_cli_for_batch_jobs(serve_factory: Any) -> None:
    import json as jsonlib

    served = serve_factory()
    env = {**served.env, "KMS_URL": served.url, "KMS_TOKEN": served.member}

    def kms(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kms.cli", *args], env=env, capture_output=True, text=True, timeout=180
        )

    done = kms("keys", "create", "--spec", "AES_256", "--count", "2500", "--name-prefix", "batch-")
    assert done.returncode == 0, done.stderr
    assert "2500 keys created, 0 failed" in done.stdout
    assert "2500/2500 done" in done.stderr  # the progress report
    batch_id = done.stdout.strip().rsplit("batches: ", 1)[1].split(",")[0].rstrip(")")
    status = kms("batch", "status", batch_id)
    assert status.returncode == 0 and "SUCCEEDED 1000" in status.stdout
    listing = kms("keys", "list", "--json", "-q", "batch-")
    keys = jsonlib.loads(listing.stdout)
    assert len(keys) == 2500 and {k["state"] for k in keys} == {"ACTIVE"}
    table = kms("keys", "list", "--state", "ACTIVE")
    assert table.returncode == 0 and "batch-" in table.stdout
    gone = kms("keys", "delete", keys[0]["id"], keys[1]["id"], "--days", "7")
    assert gone.returncode == 0 and "2 keys scheduled for deletion in 7 days" in gone.stdout, gone.stderr
    again = kms("keys", "delete", keys[0]["id"], "00000000-0000-0000-0000-000000000000", "--days", "7")
    assert again.returncode == 1 and "InvalidKeyState" in again.stderr and "NotFound" in again.stderr
    wrong = kms("keys", "delete", keys[2]["id"], "--days", "3")
    assert wrong.returncode == 1 and "ValidationError" in wrong.stderr
    import urllib.request

    request = urllib.request.Request(
        served.url + "/v1/keys",
        data=b'{"name": "one", "key_spec": "EC_P256"}',
        headers=served.headers(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        op_id = jsonlib.loads(resp.read())["operation"]["id"]
    watched = kms("op", "status", op_id, "--watch")
    assert watched.returncode == 0 and "SUCCEEDED" in watched.stdout and "create_key" in watched.stdout


async def test_ten_concurrent_batches_and_another_project(serve_factory: Any) -> None:
    served = serve_factory()
    other = subprocess.run(
        [sys.executable, "-m", "kms.cli", "token", "create", "--project", "other"],
        env=served.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    async with aiohttp.ClientSession() as session:

        async def batch(i: int) -> dict:
            ops = [
                {"command": "create_key", "params": {"name": f"b{i}-{j}", "key_spec": "AES_256"}}
                for j in range(1000)
            ]
            status, answer = await call(session, served, "POST", "/v1/batches", json={"operations": ops})
            assert status == 202 and answer["batch"]["accepted"] == 1000, answer
            return answer["batch"]

        tasks = [asyncio.create_task(batch(i)) for i in range(10)]
        await asyncio.sleep(0.2)
        status, answer = await call(
            session,
            served,
            "POST",
            "/v1/keys",
            other,
            json={"name": "meanwhile", "key_spec": "AES_256"},
            headers={"Prefer": "wait=20"},
        )
        assert status == 200 and answer["key"]["state"] == "ACTIVE"
        batches = await asyncio.gather(*tasks)
        for b in batches:
            _, progress = await call(
                session, served, "GET", f"/v1/batches/{b['id']}", headers={"Prefer": "wait=30"}
            )
            assert progress["done"] and progress["counts"]["SUCCEEDED"] == 1000, progress
        counts = await _all_finished(session, served, 10_000, timeout=60)
        assert counts == {"ACTIVE": 10_000}
        _, theirs = await call(session, served, "GET", "/v1/keys", other)
        assert [k["name"] for k in theirs["keys"]] == ["meanwhile"]


async def test_ops_views_and_metrics_under_serve(serve_factory: Any, service_env: dict[str, str]) -> None:
    served = serve_factory(service_env)
    async with aiohttp.ClientSession() as session:
        status, answer = await call(
            session,
            served,
            "POST",
            "/v1/keys",
            json={"name": "m", "key_spec": "AES_256"},
            headers={"Prefer": "wait=10"},
        )
        assert status == 200
        status, view = await call(session, served, "GET", "/v1/ops/queues", served.admin)
        assert status == 200 and any(w["alive"] for w in view["workers"]), view
        status, err = await call(session, served, "GET", "/v1/ops/queues")  # member token
        assert status == 403
        async with session.get(served.url + "/metrics") as resp:
            text = await resp.text()
        # the workers' own metrics, from their processes (multiprocess mode)
        assert "dramatiq_messages_total{" in text and 'actor_name="create_key"' in text
        assert 'kms_operations_total{kind="create_key",status="SUCCEEDED"}' in text
        assert 'kms_keys{state="ACTIVE"} 1.0' in text
    env = {**served.env, "KMS_URL": served.url, "KMS_TOKEN": served.admin}
    done = subprocess.run(
        [sys.executable, "-m", "kms.cli", "ops", "queues"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "create" in done.stdout and "workers:" in done.stdout, done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "kms.cli", "ops", "dead-letters", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.strip() == "[]"
    done = subprocess.run(
        [sys.executable, "-m", "kms.cli", "ops", "requeue", "no-such-message"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "NotFound" in done.stderr


def test_stop_budget_fits_in_thirty_seconds() -> None:
    from kms.supervisor import STOP_BUDGET_S

    assert sum(STOP_BUDGET_S.values()) < 30
