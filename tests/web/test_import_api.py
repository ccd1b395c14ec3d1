"""Importing key material through the API, wrapped by the real `openssl` command
line with the guide's commands verbatim (seed guide, "Instructions for Creating
and Wrapping Key Content"), uploaded as JSON and as multipart files."""

from __future__ import annotations

import base64
import os
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from workers.scheduler import sweep_once

pytestmark = pytest.mark.openssl

ALGORITHMS = ["RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1"]


def sh(cmd: str, cwd: Path) -> None:
    """Run one of the guide's command lines as written."""
    subprocess.run(cmd, shell=True, cwd=cwd, check=True, capture_output=True, timeout=60)  # noqa: S602


def md(algorithm: str) -> str:
    return "sha256" if algorithm.endswith("SHA_256") else "sha1"


async def parameters(
    api: Any, key_id: str, cwd: Path, spec: str = "RSA_2048", algorithm: str = "RSAES_OAEP_SHA_256"
) -> bytes:
    status, params = await api.call(
        "POST",
        f"/v1/keys/{key_id}/import-parameters",
        json={"wrapping_key_spec": spec, "wrapping_algorithm": algorithm},
    )
    assert status == 200, params
    assert params["key_id"] == key_id and params["wrapping_algorithm"] == algorithm
    (cwd / "WrappingPublicKey.pem").write_text(params["public_key_pem"])
    token = base64.b64decode(params["import_token"])
    (cwd / "ImportToken.bin").write_bytes(token)
    return token


def wrap_symmetric(cwd: Path, algorithm: str, material: bytes | None = None) -> bytes:
    if material is None:
        sh("openssl rand -out PlaintextKeyMaterial.bin 32", cwd)
    else:
        (cwd / "PlaintextKeyMaterial.bin").write_bytes(material)
    sh(
        "openssl pkeyutl -encrypt -inkey WrappingPublicKey.pem -pubin -pkeyopt rsa_padding_mode:oaep "
        f"-pkeyopt rsa_oaep_md:{md(algorithm)} -in PlaintextKeyMaterial.bin -out EncryptedKeyMaterial.bin",
        cwd,
    )
    return (cwd / "EncryptedKeyMaterial.bin").read_bytes()


def wrap_private_key(cwd: Path, algorithm: str, key_file: str = "my_private_key.pem") -> bytes:
    """The guide's asymmetric recipe, steps 1, 3, 4 and 5."""
    while True:  # a key starting with 0x00 makes openssl itself fail (empty password)
        sh("openssl rand -out aes_key.bin 32", cwd)
        if (cwd / "aes_key.bin").read_bytes()[0] != 0:
            break
    sh(
        "openssl pkeyutl -encrypt -inkey WrappingPublicKey.pem -pubin -pkeyopt rsa_padding_mode:oaep "
        f"-pkeyopt rsa_oaep_md:{md(algorithm)} -in aes_key.bin -out aes_key_wrapped.bin",
        cwd,
    )
    sh(
        f"openssl enc -aes-256-cbc -salt -in {key_file} -out my_private_key_wrapped.bin "
        "-pass file:aes_key.bin -pbkdf2 -iter 10",
        cwd,
    )
    sh("cat aes_key_wrapped.bin my_private_key_wrapped.bin > EncryptedKeyMaterial.bin", cwd)
    return (cwd / "EncryptedKeyMaterial.bin").read_bytes()


async def upload(
    api: Any,
    key_id: str,
    material: bytes,
    token: bytes,
    *,
    multipart: bool = False,
    expires_at: str | None = None,
) -> tuple[int, Any]:
    """Submit an import; once accepted, wait for it and answer with the finished operation."""
    if multipart:
        form = aiohttp.FormData()
        form.add_field(
            "encrypted_key_material",
            material,
            filename="EncryptedKeyMaterial.bin",
            content_type="application/octet-stream",
        )
        form.add_field(
            "import_token", token, filename="ImportToken.bin", content_type="application/octet-stream"
        )
        if expires_at:
            form.add_field("expires_at", expires_at)
        status, answer = await api.call("POST", f"/v1/keys/{key_id}/import", data=form)
    else:
        body: dict[str, Any] = {
            "encrypted_key_material": base64.b64encode(material).decode(),
            "import_token": base64.b64encode(token).decode(),
        }
        if expires_at:
            body["expires_at"] = expires_at
        status, answer = await api.call("POST", f"/v1/keys/{key_id}/import", json=body)
    if status != 202:
        return status, answer
    await api.settle()
    _, op = await api.call("GET", f"/v1/operations/{answer['operation']['id']}")
    return status, op


async def external_key(api: Any, spec: str = "AES_256", usage: str | None = None) -> str:
    body: dict[str, Any] = {"origin": "EXTERNAL", "key_spec": spec}
    if usage:
        body["key_usage"] = usage
    key = await api.create_key(**body)
    assert key["state"] == "PENDING_IMPORT"
    return str(key["id"])


@pytest.mark.parametrize("wrapping_spec", ["RSA_2048", "RSA_3072", "RSA_4096"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_symmetric_import_with_the_guides_commands(
    api: Any, tmp_path: Path, wrapping_spec: str, algorithm: str
) -> None:
    key_id = await external_key(api)
    token = await parameters(api, key_id, tmp_path, wrapping_spec, algorithm)
    material = wrap_symmetric(tmp_path, algorithm)
    multipart = ALGORITHMS.index(algorithm) % 2 == 1
    status, op = await upload(api, key_id, material, token, multipart=multipart)
    assert status == 202 and op["status"] == "SUCCEEDED", op
    _, key = await api.call("GET", f"/v1/keys/{key_id}")
    assert key["state"] == "ACTIVE" and key["material"]["state"] == "ACTIVE"
    assert key["material"]["imported_at"] and key["material"]["expires_at"] is None


@pytest.mark.parametrize("algorithm", ["RSA_AES_KEY_WRAP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1"])
@pytest.mark.parametrize(
    "spec,genpkey",
    [
        ("RSA_4096", "openssl genpkey -algorithm RSA -out my_private_key.pem -pkeyopt rsa_keygen_bits:4096"),
        ("RSA_2048", "openssl genpkey -algorithm RSA -out my_private_key.pem -pkeyopt rsa_keygen_bits:2048"),
        ("EC_P384", "openssl genpkey -algorithm EC -out my_private_key.pem -pkeyopt ec_paramgen_curve:P-384"),
    ],
)
async def test_asymmetric_import_with_the_guides_commands(
    api: Any, tmp_path: Path, spec: str, genpkey: str, algorithm: str
) -> None:
    key_id = await external_key(api, spec, "SIGN_VERIFY")
    token = await parameters(api, key_id, tmp_path, "RSA_4096", algorithm)
    sh(genpkey, tmp_path)
    status, op = await upload(
        api, key_id, wrap_private_key(tmp_path, algorithm), token, multipart=spec.startswith("RSA")
    )
    assert op["status"] == "SUCCEEDED", op
    _, key = await api.call("GET", f"/v1/keys/{key_id}")
    assert key["state"] == "ACTIVE"
    # re-import of the same key in another encoding (PKCS#1 PEM) is identical material
    sh("openssl pkey -in my_private_key.pem -traditional -out again.pem", tmp_path)
    token = await parameters(api, key_id, tmp_path, "RSA_2048", algorithm)
    status, op = await upload(api, key_id, wrap_private_key(tmp_path, algorithm, "again.pem"), token)
    assert op["status"] == "SUCCEEDED", op


async def test_aes_keys_with_newline_and_nul_bytes(api: Any, tmp_path: Path) -> None:
    """The openssl password cut (first 0x0A / 0x00) matters for the salted format;
    direct OAEP carries such keys whole."""
    for material in (
        b"\x0a" + os.urandom(31),
        os.urandom(10) + b"\x00" + os.urandom(21),
        os.urandom(5) + b"\x0a\x00" + os.urandom(25),
    ):
        key_id = await external_key(api)
        token = await parameters(api, key_id, tmp_path, "RSA_2048", "RSA_AES_KEY_WRAP_SHA_1")
        status, op = await upload(
            api, key_id, wrap_symmetric(tmp_path, "RSA_AES_KEY_WRAP_SHA_1", material), token
        )
        assert op["status"] == "SUCCEEDED", op


async def _imported_key(api: Any, cwd: Path) -> tuple[str, bytes]:
    key_id = await external_key(api)
    token = await parameters(api, key_id, cwd)
    sh("openssl rand -out PlaintextKeyMaterial.bin 32", cwd)
    material = (cwd / "PlaintextKeyMaterial.bin").read_bytes()
    status, op = await upload(api, key_id, wrap_symmetric(cwd, "RSAES_OAEP_SHA_256", material), token)
    assert op["status"] == "SUCCEEDED", op
    return key_id, material


async def test_reimport_must_be_identical(api: Any, tmp_path: Path) -> None:
    key_id, material = await _imported_key(api, tmp_path)
    _, before = await api.call("GET", f"/v1/keys/{key_id}")
    token = await parameters(api, key_id, tmp_path)
    status, op = await upload(api, key_id, wrap_symmetric(tmp_path, "RSAES_OAEP_SHA_256"), token)
    assert op["status"] == "FAILED" and op["error"]["code"] == "IncorrectKeyMaterial"
    assert "identical" in op["error"]["message"]
    _, after = await api.call("GET", f"/v1/keys/{key_id}")
    assert after == before
    token = await parameters(api, key_id, tmp_path)
    status, op = await upload(
        api, key_id, wrap_symmetric(tmp_path, "RSAES_OAEP_SHA_256", material), token, multipart=True
    )
    assert op["status"] == "SUCCEEDED", op


async def test_material_deletion_keeps_the_fingerprint(api: Any, tmp_path: Path) -> None:
    key_id, material = await _imported_key(api, tmp_path)
    status, answer = await api.call("DELETE", f"/v1/keys/{key_id}/material")
    assert status == 202
    await api.settle()
    _, key = await api.call("GET", f"/v1/keys/{key_id}")
    assert key["state"] == "PENDING_IMPORT" and key["material"]["state"] == "DELETED"
    status, err = await api.call("POST", f"/v1/keys/{key_id}/enable")
    assert status == 409
    token = await parameters(api, key_id, tmp_path)
    _, op = await upload(api, key_id, wrap_symmetric(tmp_path, "RSAES_OAEP_SHA_256"), token)
    assert op["error"]["code"] == "IncorrectKeyMaterial"
    token = await parameters(api, key_id, tmp_path)
    _, op = await upload(api, key_id, wrap_symmetric(tmp_path, "RSAES_OAEP_SHA_256", material), token)
    assert op["status"] == "SUCCEEDED"


async def test_material_expiry(api: Any, rt: Any, tmp_path: Path) -> None:
    from kms.clock import rfc3339

    key_id = await external_key(api)
    token = await parameters(api, key_id, tmp_path)
    material = wrap_symmetric(tmp_path, "RSAES_OAEP_SHA_256")
    past = rfc3339(rt.clock.now())
    status, err = await upload(api, key_id, material, token, expires_at=past)
    assert status == 400 and err["error"]["code"] == "ValidationError" and "future" in err["error"]["message"]
    too_far = rfc3339(rt.clock.now().replace(year=rt.clock.now().year + 2))
    status, err = await upload(api, key_id, material, token, expires_at=too_far)
    assert status == 400 and "365" in err["error"]["message"]
    expires = rfc3339(rt.clock.now().replace(microsecond=0) + timedelta(seconds=5)) or ""
    status, op = await upload(api, key_id, material, token, expires_at=expires, multipart=True)
    assert op["status"] == "SUCCEEDED", op
    _, key = await api.call("GET", f"/v1/keys/{key_id}")
    assert key["material"]["expires_at"] == expires
    rt.clock.advance(6)
    sweep_once(rt)
    await api.settle()
    _, key = await api.call("GET", f"/v1/keys/{key_id}")
    assert key["state"] == "PENDING_IMPORT" and key["material"]["state"] == "EXPIRED"
    status, err = await api.call("POST", f"/v1/keys/{key_id}/enable")
    assert status == 409


async def test_token_checks_answer_at_once(api: Any, rt: Any, tmp_path: Path) -> None:
    key_a = await external_key(api)
    key_b = await external_key(api)
    token_a = await parameters(api, key_a, tmp_path)
    material = wrap_symmetric(tmp_path, "RSAES_OAEP_SHA_256")
    # token of another key
    status, err = await upload(api, key_b, material, token_a)
    assert status == 400 and err["error"]["code"] == "InvalidImportToken"
    # tampered token
    bad = bytearray(token_a)
    bad[len(bad) // 2] ^= 1
    status, err = await upload(api, key_a, material, bytes(bad))
    assert status == 400 and err["error"]["code"] == "InvalidImportToken"
    status, err = await upload(api, key_a, material, b"")
    assert status == 400 and err["error"]["code"] == "InvalidImportToken"
    # expired (a scaled day later)
    rt.clock.advance(rt.settings.day_s + 1)
    status, err = await upload(api, key_a, material, token_a)
    assert status == 400 and err["error"]["code"] == "ExpiredImportToken"
    _, key = await api.call("GET", f"/v1/keys/{key_a}")
    assert key["state"] == "PENDING_IMPORT"
    _, ops = await api.call("GET", f"/v1/operations?key_id={key_a}&kind=import")
    assert ops["operations"] == []  # refused at once: nothing was accepted


@pytest.mark.parametrize("damage", ["flip-first", "flip-last", "truncate", "other-wrapping-key"])
async def test_damaged_material_fails_opaquely(api: Any, tmp_path: Path, damage: str) -> None:
    key_id = await external_key(api)
    token = await parameters(api, key_id, tmp_path)
    material = bytearray(wrap_symmetric(tmp_path, "RSAES_OAEP_SHA_256"))
    if damage == "flip-first":
        material[0] ^= 0x80
    elif damage == "flip-last":
        material[-1] ^= 1
    elif damage == "truncate":
        material = material[:-1]
    else:  # wrapped for another wrapping key (a second download), submitted with the first token
        await parameters(api, key_id, tmp_path)
        material = bytearray(wrap_symmetric(tmp_path, "RSAES_OAEP_SHA_256"))
    status, op = await upload(api, key_id, bytes(material), token)
    assert op["status"] == "FAILED" and op["error"]["code"] == "InvalidKeyMaterial", op
    messages = {op["error"]["message"]}
    assert len(messages) == 1 and "wrap" in op["error"]["message"]
    _, key = await api.call("GET", f"/v1/keys/{key_id}")
    assert key["state"] == "PENDING_IMPORT" and key["material"]["state"] == "NONE"


async def test_wrong_size_or_type_for_the_spec(api: Any, tmp_path: Path) -> None:
    key_id = await external_key(api)
    token = await parameters(api, key_id, tmp_path)
    _, op = await upload(api, key_id, wrap_symmetric(tmp_path, "RSAES_OAEP_SHA_256", os.urandom(16)), token)
    assert op["error"]["code"] == "InvalidKeyMaterial" and "32 bytes" in op["error"]["message"]
    # the guide's `openssl rand -out PlaintextKeyMaterial.bin` without 32 writes an empty file
    token = await parameters(api, key_id, tmp_path)
    sh("openssl rand -out PlaintextKeyMaterial.bin", tmp_path)
    assert (tmp_path / "PlaintextKeyMaterial.bin").read_bytes() == b""
    sh(
        "openssl pkeyutl -encrypt -inkey WrappingPublicKey.pem -pubin -pkeyopt rsa_padding_mode:oaep "
        "-pkeyopt rsa_oaep_md:sha256 -in PlaintextKeyMaterial.bin -out EncryptedKeyMaterial.bin",
        tmp_path,
    )
    _, op = await upload(api, key_id, (tmp_path / "EncryptedKeyMaterial.bin").read_bytes(), token)
    assert op["error"]["code"] == "InvalidKeyMaterial"
    assert "32" in op["error"]["message"] and "openssl rand" in op["error"]["message"]
    # an RSA private key for an EC key
    ec_key = await external_key(api, "EC_P256")
    token = await parameters(api, ec_key, tmp_path, "RSA_2048", "RSA_AES_KEY_WRAP_SHA_256")
    sh("openssl genpkey -algorithm RSA -out my_private_key.pem -pkeyopt rsa_keygen_bits:2048", tmp_path)
    _, op = await upload(api, ec_key, wrap_private_key(tmp_path, "RSA_AES_KEY_WRAP_SHA_256"), token)
    assert op["error"]["code"] == "InvalidKeyMaterial" and "EC_P256" in op["error"]["message"]


async def test_refusals_at_once(api: Any, tmp_path: Path) -> None:
    generated = await api.create_key()
    status, err = await api.call(
        "POST",
        f"/v1/keys/{generated['id']}/import-parameters",
        json={"wrapping_key_spec": "RSA_2048", "wrapping_algorithm": "RSAES_OAEP_SHA_256"},
    )
    assert status == 400 and err["error"]["code"] == "UnsupportedOperation"
    key_id = await external_key(api)
    token = await parameters(api, key_id, tmp_path)
    material = wrap_symmetric(tmp_path, "RSAES_OAEP_SHA_256")
    status, op = await api.command(key_id, "schedule-deletion", pending_window_days=7)
    assert op["status"] == "SUCCEEDED"
    status, err = await upload(api, key_id, material, token)
    assert status == 409 and err["error"]["code"] == "InvalidKeyState"
    status, err = await api.call(
        "POST",
        f"/v1/keys/{key_id}/import-parameters",
        json={"wrapping_key_spec": "RSA_2048", "wrapping_algorithm": "RSAES_OAEP_SHA_256"},
    )
    assert status == 409 and err["error"]["code"] == "InvalidKeyState"
    status, err = await api.call(
        "POST",
        f"/v1/keys/{key_id}/import-parameters",
        json={"wrapping_key_spec": "RSA_1024", "wrapping_algorithm": "RSAES_OAEP_SHA_256"},
    )
    assert status == 400 and "RSA_4096" in err["error"]["message"]


async def test_oversized_upload(api: Any, tmp_path: Path) -> None:
    key_id = await external_key(api)
    token = await parameters(api, key_id, tmp_path)
    status, err = await upload(api, key_id, os.urandom(1024 * 1024 + 10), token, multipart=True)
    assert status == 413 and err["error"]["code"] == "PayloadTooLarge"
    status, err = await upload(api, key_id, os.urandom(100 * 1024), token)
    assert status == 413 and err["error"]["code"] == "PayloadTooLarge"


async def test_nothing_secret_in_operation_results(api: Any, rt: Any, tmp_path: Path) -> None:
    key_id, material = await _imported_key(api, tmp_path)
    _, ops = await api.call("GET", f"/v1/operations?key_id={key_id}")
    text = str(ops)
    assert material.hex() not in text and base64.b64encode(material).decode() not in text
    from sqlalchemy import func, select

    from models.tables import ImportPayload

    with rt.db.read() as s:  # the upload is gone once the import ran
        assert s.execute(select(func.count()).select_from(ImportPayload)).scalar_one() == 0
