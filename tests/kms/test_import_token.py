"""Import tokens (DESIGN §6.5)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from datetime import UTC, datetime, timedelta

import pytest

from kms.crypto.envelope import RootKeyring
from kms.crypto.import_token import (
    INVALID_MESSAGE,
    OTHER_KEY_MESSAGE,
    ImportTokenClaims,
    issue_import_token,
    verify_import_token,
)
from kms.crypto.wrapping import WrappingAlgorithm, WrappingKeySpec
from kms.errors import ExpiredImportToken, InvalidImportToken

NOW = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
EXPIRES = NOW + timedelta(hours=24)
KEY_ID = "5f0c3a9e-key"


@pytest.fixture
def token_key() -> bytes:
    return RootKeyring([os.urandom(32)]).derive("import-token")


def issue(token_key: bytes, **overrides: object) -> bytes:
    fields: dict[str, object] = {
        "key_id": KEY_ID,
        "wrapping_key_id": "wk-17",
        "wrapping_key_spec": WrappingKeySpec.RSA_3072,
        "algorithm": WrappingAlgorithm.RSA_AES_KEY_WRAP_SHA_256,
        "expires_at": EXPIRES,
    }
    fields.update(overrides)
    return issue_import_token(token_key, **fields)  # type: ignore[arg-type]


def assert_invalid(token_keys: list[bytes], token: bytes, message: str = INVALID_MESSAGE) -> None:
    with pytest.raises(InvalidImportToken) as info:
        verify_import_token(token_keys, token, key_id=KEY_ID, now=NOW)
    assert info.value.message == message
    assert info.value.code == "InvalidImportToken"


def test_roundtrip(token_key: bytes) -> None:
    token = issue(token_key)
    assert isinstance(token, bytes) and token[0] == 1
    claims = verify_import_token([token_key], token, key_id=KEY_ID, now=NOW)
    assert claims == ImportTokenClaims(
        key_id=KEY_ID,
        wrapping_key_id="wk-17",
        wrapping_key_spec=WrappingKeySpec.RSA_3072,
        algorithm=WrappingAlgorithm.RSA_AES_KEY_WRAP_SHA_256,
        expires_at=EXPIRES,
    )
    assert claims.expires_at.tzinfo is not None
    assert token_key not in token


def test_each_token_is_unique(token_key: bytes) -> None:
    assert issue(token_key) != issue(token_key)


def test_strings_and_naive_times_accepted(token_key: bytes) -> None:
    token = issue(
        token_key,
        wrapping_key_spec="rsa_2048",
        algorithm="RSAES_OAEP_SHA_1",
        expires_at=EXPIRES.replace(tzinfo=None),
    )
    claims = verify_import_token([token_key], token, key_id=KEY_ID, now=NOW.replace(tzinfo=None))
    assert claims.wrapping_key_spec is WrappingKeySpec.RSA_2048
    assert claims.algorithm is WrappingAlgorithm.RSAES_OAEP_SHA_1
    assert claims.expires_at == EXPIRES


def test_token_of_another_key(token_key: bytes) -> None:
    token = issue(token_key, key_id="another-key")
    assert_invalid([token_key], token, OTHER_KEY_MESSAGE)
    assert "another key" in OTHER_KEY_MESSAGE


def test_expiry(token_key: bytes) -> None:
    token = issue(token_key)
    verify_import_token([token_key], token, key_id=KEY_ID, now=EXPIRES - timedelta(microseconds=1))
    for now in (EXPIRES, EXPIRES + timedelta(days=3)):
        with pytest.raises(ExpiredImportToken) as info:
            verify_import_token([token_key], token, key_id=KEY_ID, now=now)
        assert "download a new wrapping public key and import token" in info.value.message
        assert info.value.code == "ExpiredImportToken"


def test_tampered_at_every_byte(token_key: bytes) -> None:
    token = issue(token_key)
    for at in range(len(token)):
        for mask in (0x01, 0x80):
            forged = bytearray(token)
            forged[at] ^= mask
            assert_invalid([token_key], bytes(forged))


def test_truncated_extended_empty_garbage(token_key: bytes) -> None:
    token = issue(token_key)
    for size in range(len(token)):
        assert_invalid([token_key], token[:size])
    assert_invalid([token_key], token[1:])
    assert_invalid([token_key], token + b"\x00")
    assert_invalid([token_key], b"")
    assert_invalid([token_key], os.urandom(200))
    assert_invalid([token_key], os.urandom(10_000))
    assert_invalid([token_key], b"\x01" + b"{}" + bytes(32))


def test_authenticity_is_checked_first(token_key: bytes) -> None:
    """A forged or altered token never gets the other-key or expired answer."""
    for token in (
        issue(token_key, key_id="another-key"),
        issue(token_key, expires_at=NOW - timedelta(days=1)),
    ):
        forged = bytearray(token)
        forged[-1] ^= 1
        assert_invalid([token_key], bytes(forged))
    # a well-formed token for this key under a key the service does not have
    assert_invalid([token_key], issue(os.urandom(32)))


def test_unknown_version_is_invalid_even_when_authentic(token_key: bytes) -> None:
    payload = {
        "kid": KEY_ID,
        "wk": "w",
        "ws": "RSA_2048",
        "wa": "RSAES_OAEP_SHA_256",
        "exp": 2**60,
        "n": "00",
    }
    signed = b"\x02" + json.dumps(payload).encode()
    assert_invalid([token_key], signed + hmac.new(token_key, signed, hashlib.sha256).digest())
    signed = b"\x01" + b"not json"
    assert_invalid([token_key], signed + hmac.new(token_key, signed, hashlib.sha256).digest())
    signed = b"\x01" + json.dumps({**payload, "wa": "RSAES_PKCS1"}).encode()
    assert_invalid([token_key], signed + hmac.new(token_key, signed, hashlib.sha256).digest())


def test_rotated_token_keys() -> None:
    first, second = os.urandom(32), os.urandom(32)
    before = RootKeyring([first])
    after = RootKeyring([second, first])
    token = issue(before.derive("import-token"))
    claims = verify_import_token(after.derive_all("import-token"), token, key_id=KEY_ID, now=NOW)
    assert claims.key_id == KEY_ID
    assert_invalid([after.derive("import-token")], token)
    assert_invalid(RootKeyring([second]).derive_all("import-token"), token)
    assert_invalid(after.derive_all("material-fingerprint"), token)  # another purpose key
    assert_invalid([], token)


def test_short_token_key_refused() -> None:
    with pytest.raises(ValueError):
        issue(b"short")
