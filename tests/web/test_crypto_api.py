"""Using keys: round trips for every spec and algorithm, opaque failures, state
enforcement (also seen by a second web process), and openssl known-answer checks."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kms.crypto.usage import HEADER_LENGTH

b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
unb64 = base64.b64decode

SIGNING = {
    "RSA_2048": [
        "RSASSA_PSS_SHA_256",
        "RSASSA_PSS_SHA_384",
        "RSASSA_PSS_SHA_512",
        "RSASSA_PKCS1_V1_5_SHA_256",
        "RSASSA_PKCS1_V1_5_SHA_384",
        "RSASSA_PKCS1_V1_5_SHA_512",
    ],
    "RSA_3072": ["RSASSA_PSS_SHA_256", "RSASSA_PKCS1_V1_5_SHA_512"],
    "EC_P256": ["ECDSA_SHA_256"],
    "EC_P384": ["ECDSA_SHA_384"],
    "EC_P521": ["ECDSA_SHA_512"],
}


async def use(api: Any, key_id: str, verb: str, token: str | None = None, **body: Any) -> tuple[int, Any]:
    return await api.call("POST", f"/v1/keys/{key_id}/{verb}", token, json=body)


async def test_aes_round_trip_and_aad(api: Any) -> None:
    key = await api.create_key()
    status, enc = await use(api, key["id"], "encrypt", plaintext=b64(b"hello"), aad=b64(b"ctx"))
    assert status == 200 and enc["key_id"] == key["id"]
    status, dec = await use(api, key["id"], "decrypt", ciphertext=enc["ciphertext"], aad=b64(b"ctx"))
    assert status == 200 and unb64(dec["plaintext"]) == b"hello"
    status, err = await use(api, key["id"], "decrypt", ciphertext=enc["ciphertext"], aad=b64(b"other"))
    assert status == 400 and err["error"]["code"] == "InvalidCiphertext"
    status, err = await use(api, key["id"], "decrypt", ciphertext=enc["ciphertext"])
    assert status == 400 and err["error"]["code"] == "InvalidCiphertext"
    two = await use(api, key["id"], "encrypt", plaintext=b64(b"hello"))
    assert two[1]["ciphertext"] != enc["ciphertext"]  # fresh nonce every time


async def test_tampering_is_one_opaque_error(api: Any) -> None:
    key = await api.create_key()
    _, enc = await use(api, key["id"], "encrypt", plaintext=b64(b"secret message"))
    blob = unb64(enc["ciphertext"])
    positions = {
        "version": 0,
        "key id": 5,
        "material version": 19,
        "algorithm": HEADER_LENGTH - 1,
        "nonce": HEADER_LENGTH + 3,
        "body": HEADER_LENGTH + 14,
        "tag": len(blob) - 1,
    }
    messages = set()
    for where, pos in positions.items():
        bad = bytearray(blob)
        bad[pos] ^= 0x01
        status, err = await use(api, key["id"], "decrypt", ciphertext=b64(bytes(bad)))
        assert status == 400 and err["error"]["code"] == "InvalidCiphertext", where
        messages.add(err["error"]["message"])
    for cut in (1, HEADER_LENGTH, len(blob) - 1):
        status, err = await use(api, key["id"], "decrypt", ciphertext=b64(blob[:cut]))
        assert status == 400 and err["error"]["code"] == "InvalidCiphertext"
        messages.add(err["error"]["message"])
    assert len(messages) == 1  # nothing tells which part was wrong


async def test_another_keys_ciphertext(api: Any) -> None:
    a, b = await api.create_key(), await api.create_key()
    _, enc = await use(api, a["id"], "encrypt", plaintext=b64(b"x"))
    status, err = await use(api, b["id"], "decrypt", ciphertext=enc["ciphertext"])
    assert status == 400 and err["error"]["code"] == "InvalidCiphertext"
    status, err = await use(api, a["id"], "decrypt", api.other, ciphertext=enc["ciphertext"])
    assert status == 404  # another project's key: as if unknown


async def test_generate_data_key(api: Any) -> None:
    key = await api.create_key()
    status, dk = await use(api, key["id"], "generate-data-key", number_of_bytes=64)
    assert status == 200 and len(unb64(dk["plaintext"])) == 64
    _, dec = await use(api, key["id"], "decrypt", ciphertext=dk["ciphertext"])
    assert dec["plaintext"] == dk["plaintext"]
    status, dk = await api.call("POST", f"/v1/keys/{key['id']}/generate-data-key")
    assert status == 200 and len(unb64(dk["plaintext"])) == 32
    for bad in (0, 1025, "32"):
        status, err = await use(api, key["id"], "generate-data-key", number_of_bytes=bad)
        assert status == 400 and err["error"]["code"] == "ValidationError"


async def test_limits_and_validation(api: Any) -> None:
    key = await api.create_key()
    status, err = await use(api, key["id"], "encrypt", plaintext=b64(os.urandom(4097)))
    assert status == 400 and "4096" in err["error"]["message"]
    status, err = await use(api, key["id"], "encrypt", plaintext="not base64!")
    assert status == 400 and err["error"]["code"] == "ValidationError"
    status, err = await use(api, key["id"], "sign", message=b64(b"m"), signing_algorithm="ECDSA_SHA_256")
    assert status == 400 and err["error"]["code"] == "UnsupportedOperation"
    status, err = await api.call("GET", f"/v1/keys/{key['id']}/public-key")
    assert status == 400 and err["error"]["code"] == "UnsupportedOperation"


@pytest.mark.openssl
@pytest.mark.parametrize("spec", list(SIGNING))
async def test_sign_verify_every_algorithm_checked_by_openssl(api: Any, tmp_path: Path, spec: str) -> None:
    key = await api.create_key(key_spec=spec, key_usage="SIGN_VERIFY")
    status, pub = await api.call("GET", f"/v1/keys/{key['id']}/public-key")
    assert status == 200 and pub["key_spec"] == spec and pub["key_usage"] == "SIGN_VERIFY"
    assert set(SIGNING[spec]) <= set(pub["signing_algorithms"])
    (tmp_path / "pub.pem").write_text(pub["public_key_pem"])
    message = b"the message " + os.urandom(8)
    (tmp_path / "msg.bin").write_bytes(message)
    for algorithm in SIGNING[spec]:
        status, signed = await use(api, key["id"], "sign", message=b64(message), signing_algorithm=algorithm)
        assert status == 200, signed
        (tmp_path / "sig.bin").write_bytes(unb64(signed["signature"]))
        digest = "-sha" + algorithm.rsplit("_", 1)[1]
        pss = (
            ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"]
            if "PSS" in algorithm
            else []
        )
        done = subprocess.run(
            ["openssl", "dgst", digest, "-verify", "pub.pem", *pss, "-signature", "sig.bin", "msg.bin"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0 and "Verified OK" in done.stdout, (algorithm, done.stderr)
        status, ok = await use(
            api,
            key["id"],
            "verify",
            message=b64(message),
            signature=signed["signature"],
            signing_algorithm=algorithm,
        )
        assert ok["valid"] is True
        status, bad = await use(
            api,
            key["id"],
            "verify",
            message=b64(message + b"!"),
            signature=signed["signature"],
            signing_algorithm=algorithm,
        )
        assert bad["valid"] is False
        # DIGEST message type: the same signature check over a precomputed digest
        hashed = hashlib.new("sha" + algorithm.rsplit("_", 1)[1], message).digest()
        status, ok = await use(
            api,
            key["id"],
            "verify",
            message=b64(hashed),
            message_type="DIGEST",
            signature=signed["signature"],
            signing_algorithm=algorithm,
        )
        assert ok["valid"] is True


async def import_own_key(api: Any, tmp_path: Path, spec: str, usage: str, genpkey: list[str]) -> str:
    """Create an EXTERNAL key and import the user's own private key (made by openssl) into it."""
    from kms.crypto.wrapping import wrap_material

    key = await api.create_key(key_spec=spec, key_usage=usage, origin="EXTERNAL")
    subprocess.run(
        ["openssl", "genpkey", *genpkey, "-out", "mine.pem"], cwd=tmp_path, check=True, capture_output=True
    )
    subprocess.run(
        ["openssl", "pkey", "-in", "mine.pem", "-pubout", "-out", "mine.pub.pem"], cwd=tmp_path, check=True
    )
    _, params = await api.call(
        "POST",
        f"/v1/keys/{key['id']}/import-parameters",
        json={"wrapping_key_spec": "RSA_2048", "wrapping_algorithm": "RSA_AES_KEY_WRAP_SHA_256"},
    )
    wrapped = wrap_material(
        params["public_key_pem"], "RSA_AES_KEY_WRAP_SHA_256", (tmp_path / "mine.pem").read_bytes()
    )
    status, accepted = await api.call(
        "POST",
        f"/v1/keys/{key['id']}/import",
        json={"encrypted_key_material": b64(wrapped), "import_token": params["import_token"]},
    )
    assert status == 202, accepted
    await api.settle()
    _, now = await api.call("GET", f"/v1/keys/{key['id']}")
    assert now["state"] == "ACTIVE", now
    return str(key["id"])


@pytest.mark.openssl
async def test_imported_rsa_key_encrypts_for_the_users_private_key(api: Any, tmp_path: Path) -> None:
    key_id = await import_own_key(
        api,
        tmp_path,
        "RSA_2048",
        "ENCRYPT_DECRYPT",
        ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    )
    status, enc = await use(api, key_id, "encrypt", plaintext=b64(b"for your eyes"))
    assert status == 200
    (tmp_path / "body.bin").write_bytes(unb64(enc["ciphertext"])[HEADER_LENGTH:])
    done = subprocess.run(
        [
            "openssl",
            "pkeyutl",
            "-decrypt",
            "-inkey",
            "mine.pem",
            "-in",
            "body.bin",
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha256",
            "-pkeyopt",
            "rsa_mgf1_md:sha256",
        ],
        cwd=tmp_path,
        capture_output=True,
    )
    assert done.returncode == 0 and done.stdout == b"for your eyes", done.stderr
    _, dec = await use(api, key_id, "decrypt", ciphertext=enc["ciphertext"])
    assert unb64(dec["plaintext"]) == b"for your eyes"
    _, pub = await api.call("GET", f"/v1/keys/{key_id}/public-key")
    assert pub["public_key_pem"].strip() == (tmp_path / "mine.pub.pem").read_text().strip()
    assert pub["encryption_algorithms"] == ["RSAES_OAEP_SHA_256"]


@pytest.mark.openssl
async def test_imported_ec_key_signs_for_the_users_public_key(api: Any, tmp_path: Path) -> None:
    key_id = await import_own_key(
        api, tmp_path, "EC_P256", "SIGN_VERIFY", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
    )
    (tmp_path / "msg.bin").write_bytes(b"signed by the service")
    _, signed = await use(
        api, key_id, "sign", message=b64(b"signed by the service"), signing_algorithm="ECDSA_SHA_256"
    )
    (tmp_path / "sig.bin").write_bytes(unb64(signed["signature"]))
    done = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", "mine.pub.pem", "-signature", "sig.bin", "msg.bin"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "Verified OK" in done.stdout


async def test_state_is_enforced_at_once(api: Any) -> None:
    key = await api.create_key()
    _, enc = await use(api, key["id"], "encrypt", plaintext=b64(b"x"))
    status, op = await api.command(key["id"], "disable")
    assert op["status"] == "SUCCEEDED"
    status, err = await use(api, key["id"], "encrypt", plaintext=b64(b"x"))
    assert status == 409 and err["error"]["code"] == "KeyDisabled"
    status, err = await use(api, key["id"], "decrypt", ciphertext=enc["ciphertext"])
    assert status == 409 and err["error"]["code"] == "KeyDisabled"
    await api.command(key["id"], "schedule-deletion", pending_window_days=7)
    status, err = await use(api, key["id"], "encrypt", plaintext=b64(b"x"))
    assert status == 409 and err["error"]["code"] == "InvalidKeyState"
    await api.command(key["id"], "cancel-deletion")
    await api.command(key["id"], "enable")
    status, dec = await use(api, key["id"], "decrypt", ciphertext=enc["ciphertext"])
    assert status == 200 and unb64(dec["plaintext"]) == b"x"
    external = await api.create_key(origin="EXTERNAL")
    status, err = await use(api, external["id"], "encrypt", plaintext=b64(b"x"))
    assert status == 409 and err["error"]["code"] == "InvalidKeyState"


async def test_a_second_web_process_sees_the_disable(api: Any, aiohttp_client: Any, rt: Any) -> None:
    """Two apps (as two web processes) over one database: the disable done through
    one is enforced by the other, whose cache already holds the key."""
    from models.db import Database
    from web.app import create_app
    from web.context import Services
    from web.queue import Enqueuer

    second = await aiohttp_client(
        create_app(
            Services(
                settings=rt.settings,
                db=Database(rt.settings.database_url),
                keyring=rt.keyring,
                clock=rt.clock,
                queue=Enqueuer(api.broker),
            )
        )
    )
    key = await api.create_key()
    headers = api.auth()
    resp = await second.post(f"/v1/keys/{key['id']}/encrypt", json={"plaintext": b64(b"x")}, headers=headers)
    assert resp.status == 200  # cached in the second process now
    _, op = await api.command(key["id"], "disable")
    assert op["status"] == "SUCCEEDED"
    resp = await second.post(f"/v1/keys/{key['id']}/encrypt", json={"plaintext": b64(b"x")}, headers=headers)
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "KeyDisabled"
