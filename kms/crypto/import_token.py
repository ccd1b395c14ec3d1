"""Import tokens (DESIGN §6.5).

An import token is handed out with a wrapping public key and must come back with the
wrapped material. It is opaque to the user and authenticated with a purpose key the
caller derives from the root key (``RootKeyring.derive("import-token")``; verify with
``derive_all`` so tokens survive root key rotation). Layout::

    version (1 byte, 0x01) ‖ payload (compact JSON, UTF-8) ‖ HMAC-SHA256(token key, version ‖ payload)

The payload binds the key id, the wrapping key id, the wrapping key spec, the wrapping
algorithm, the expiry and a random nonce. Its content is not secret (ids, an algorithm
name, a time); what matters is that nobody but the service can make or alter a token.
Verification checks the tag first, in constant time, before reading a single field.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kms.clock import as_utc, rfc3339
from kms.crypto.wrapping import (
    WrappingAlgorithm,
    WrappingKeySpec,
    parse_wrapping_algorithm,
    parse_wrapping_key_spec,
)
from kms.errors import ExpiredImportToken, InvalidImportToken, KmsError

TOKEN_VERSION = 1
_TAG_BYTES = 32
_NONCE_BYTES = 16
#: Far above any real token (about 250 bytes); longer input is refused unread.
MAX_TOKEN_BYTES = 4096
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

INVALID_MESSAGE = (
    "the import token is not valid; download a new wrapping public key and import token for this key"
)
OTHER_KEY_MESSAGE = (
    "the import token was issued for another key; use the import token downloaded together with "
    "this key's wrapping public key, or download a new wrapping public key and import token for this key"
)


@dataclass(frozen=True)
class ImportTokenClaims:
    """What a verified token binds. ``expires_at`` is timezone-aware UTC."""

    key_id: str
    wrapping_key_id: str
    wrapping_key_spec: WrappingKeySpec
    algorithm: WrappingAlgorithm
    expires_at: datetime


def _tag(token_key: bytes, signed: bytes) -> bytes:
    return hmac.new(token_key, signed, hashlib.sha256).digest()


def _micros(value: datetime) -> int:
    return (as_utc(value) - _EPOCH) // _MICROSECOND


def issue_import_token(
    token_key: bytes,
    *,
    key_id: str,
    wrapping_key_id: str,
    wrapping_key_spec: WrappingKeySpec | str,
    algorithm: WrappingAlgorithm | str,
    expires_at: datetime,
) -> bytes:
    """Make an import token (opaque bytes; base64 them for JSON).

    ``token_key`` is the primary import-token purpose key. ``expires_at`` should be
    timezone-aware; a naive value is taken as UTC. Equal inputs give different tokens
    (random nonce).
    """
    if len(token_key) < 16:
        raise ValueError("the import token key is too short")
    payload = {
        "kid": str(key_id),
        "wk": str(wrapping_key_id),
        "ws": parse_wrapping_key_spec(wrapping_key_spec).value,
        "wa": parse_wrapping_algorithm(algorithm).value,
        "exp": _micros(expires_at),
        "n": os.urandom(_NONCE_BYTES).hex(),
    }
    signed = bytes([TOKEN_VERSION]) + json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return signed + _tag(token_key, signed)


def _invalid() -> InvalidImportToken:
    return InvalidImportToken(INVALID_MESSAGE)


def _authentic(token_keys: list[bytes], signed: bytes, tag: bytes) -> bool:
    found = False
    for token_key in token_keys:  # every key, no early exit
        found |= hmac.compare_digest(_tag(token_key, signed), tag)
    return found


def _claims(signed: bytes) -> ImportTokenClaims:
    # Only reached for authentic tokens, so a failure here means a format change.
    if signed[0] != TOKEN_VERSION:
        raise _invalid()
    try:
        payload = json.loads(signed[1:].decode("utf-8"))
        return ImportTokenClaims(
            key_id=str(payload["kid"]),
            wrapping_key_id=str(payload["wk"]),
            wrapping_key_spec=parse_wrapping_key_spec(payload["ws"]),
            algorithm=parse_wrapping_algorithm(payload["wa"]),
            expires_at=_EPOCH + int(payload["exp"]) * _MICROSECOND,
        )
    except (ValueError, KeyError, TypeError, OverflowError, KmsError):
        raise _invalid() from None


def verify_import_token(
    token_keys: list[bytes], token: bytes, *, key_id: str, now: datetime
) -> ImportTokenClaims:
    """Check a token for import into ``key_id`` at time ``now``; return its claims.

    Order: authenticity (HMAC tag, constant-time, under each of ``token_keys`` —
    primary and older root keys) before anything else, then the key binding, then the
    expiry.

    Raises :class:`InvalidImportToken` for empty, garbage, truncated or tampered tokens
    and for a token issued for another key; :class:`ExpiredImportToken` when
    ``now >= expires_at``.
    """
    token = bytes(token)
    if len(token) < 1 + 2 + _TAG_BYTES or len(token) > MAX_TOKEN_BYTES or not token_keys:
        raise _invalid()
    signed, tag = token[:-_TAG_BYTES], token[-_TAG_BYTES:]
    if not _authentic(list(token_keys), signed, tag):
        raise _invalid()
    claims = _claims(signed)
    if not hmac.compare_digest(claims.key_id.encode("utf-8"), str(key_id).encode("utf-8")):
        raise InvalidImportToken(OTHER_KEY_MESSAGE)
    if as_utc(now) >= claims.expires_at:
        raise ExpiredImportToken(
            f"the import token expired at {rfc3339(claims.expires_at)}; "
            "download a new wrapping public key and import token for this key"
        )
    return claims
