"""Envelope encryption of secrets at rest under the root key (DESIGN §7).

A sealed blob is ``version(1) ‖ root key id(4) ‖ nonce(12) ‖ AES-256-GCM(ct ‖ tag)``
with the caller's context (row id and version) as associated data, so a blob
copied to another row does not open. Several root keys may be configured: the
first seals, all open (rotation).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = 1
_HEADER = 1 + 4 + 12


class RootKeyError(ValueError):
    """The root key configuration is unusable (message names no key bytes)."""


class SealedDataError(ValueError):
    """A sealed blob failed to open: tampered, truncated or another row's."""


def root_key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"kms-root-key-id" + key).digest()[:4]


def parse_root_keys(text: str) -> list[bytes]:
    """Parse base64 root keys separated by commas, spaces or newlines."""
    keys = []
    for item in text.replace(",", " ").split():
        try:
            key = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            raise RootKeyError("a root key is not valid base64; give 32 random bytes in base64") from None
        if len(key) != 32:
            raise RootKeyError(f"a root key decodes to {len(key)} bytes; it must be exactly 32")
        keys.append(key)
    if not keys:
        raise RootKeyError("no root key given")
    return keys


def new_root_key_b64() -> str:
    return base64.b64encode(os.urandom(32)).decode()


class RootKeyring:
    """Seals and opens secrets; derives purpose keys. Never exposes the keys."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise RootKeyError("no root key given")
        self._keys = {root_key_id(k): AESGCM(k) for k in keys}
        self._raw = list(keys)
        self._primary = root_key_id(keys[0])

    def __repr__(self) -> str:  # never print key bytes
        return f"RootKeyring(keys={len(self._raw)})"

    def seal(self, plaintext: bytes, context: str) -> bytes:
        nonce = os.urandom(12)
        ct = self._keys[self._primary].encrypt(nonce, plaintext, context.encode())
        return bytes([_VERSION]) + self._primary + nonce + ct

    def open(self, blob: bytes, context: str) -> bytes:
        if len(blob) < _HEADER + 16 or blob[0] != _VERSION:
            raise SealedDataError("sealed data is malformed")
        aead = self._keys.get(blob[1:5])
        if aead is None:
            raise SealedDataError("sealed data was made under a root key that is not configured")
        try:
            return aead.decrypt(blob[5:17], blob[17:], context.encode())
        except InvalidTag:
            raise SealedDataError("sealed data failed authentication") from None

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose, derived (HKDF-SHA256) from the primary root key."""
        return self.derive_all(purpose)[0]

    def derive_all(self, purpose: str) -> list[bytes]:
        """The purpose key under every configured root key, primary first (for verifying)."""
        return [
            HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"kms:" + purpose.encode()).derive(k)
            for k in self._raw
        ]


def hash_token(token: str) -> str:
    """API tokens carry 256 bits of randomness, so a plain SHA-256 is a safe lookup hash."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_api_token() -> str:
    return "kms_" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def constant_time_equal(a: bytes | str, b: bytes | str) -> bool:
    a_b = a.encode() if isinstance(a, str) else a
    b_b = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a_b, b_b)


# Associated data of sealed rows (DESIGN §7): a blob copied to another row does not open.


def material_context(key_id: str, version: int) -> str:
    return f"key-material:{key_id}:{version}"


def wrapping_key_context(wrapping_key_id: str) -> str:
    return f"wrapping-key:{wrapping_key_id}"


def import_payload_context(operation_id: str) -> str:
    return f"import-payload:{operation_id}"


#: Purposes of keys derived from the root key.
PURPOSE_IMPORT_TOKEN = "import-token"  # noqa: S105 (a purpose label, not a secret)
PURPOSE_MATERIAL_FINGERPRINT = "material-fingerprint"
