"""Checking imported key material and fingerprinting it (DESIGN §6.3 and §6.4).

* :func:`validate_material` turns what a user uploaded (after unwrapping) into the
  canonical encoding the service stores: the raw 32 bytes for ``AES_256``, unencrypted
  PKCS#8 DER for RSA and EC private keys (the same encoding as
  :mod:`kms.crypto.keygen`). Errors say what was found and what the key spec needs.
* :func:`material_fingerprint` / :func:`fingerprint_matches` implement the
  identical-material rule: a keyed HMAC-SHA256 over the *key* (not its encoding), so
  the same RSA key as PKCS#1 PEM or PKCS#8 DER is recognised as identical.
* :func:`unwrap_and_validate` is the one call a worker needs: unwrap + validate, with
  the padding-oracle rule for the guide's unauthenticated OpenSSL format.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from kms.crypto.wrapping import UNWRAP_FAILED_MESSAGE, WrappingAlgorithm, unwrap
from kms.errors import InvalidKeyMaterial, UnsupportedOperation
from kms.specs import KeySpec, KeyUsage, allowed_usages

AES_256_BYTES = 32

#: curve name (as cryptography reports it) of each EC spec, and how users call it.
_EC_CURVES: dict[KeySpec, tuple[str, str]] = {
    KeySpec.EC_P256: ("secp256r1", "P-256"),
    KeySpec.EC_P384: ("secp384r1", "P-384"),
    KeySpec.EC_P521: ("secp521r1", "P-521"),
}
_CURVE_NAMES = {name: label for name, label in _EC_CURVES.values()}
_CURVE_BYTES = {"secp256r1": 32, "secp384r1": 48, "secp521r1": 66}

_PEM_LABEL = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")

_FINGERPRINT_DOMAIN = b"kms-material-fingerprint-v1\x00"


class UnreadableKeyMaterial(InvalidKeyMaterial):
    """The bytes are not usable key material at all (wrong AES length, not a private key,
    a public key, an encrypted key, …), as opposed to a readable private key of the wrong
    type or size. Its ``code`` is still ``InvalidKeyMaterial``; the distinction only lets
    :func:`unwrap_and_validate` keep such findings opaque for malleable uploads."""


# --------------------------------------------------------------------------- parsing


def _spec_needs(spec: KeySpec) -> str:
    if spec.is_rsa:
        return f"key spec {spec} needs an RSA {spec.rsa_bits}-bit private key"
    return f"key spec {spec} needs an EC {_EC_CURVES[spec][1]} private key"


def _describe(key: PrivateKeyTypes) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return f"an RSA {key.key_size}-bit private key"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"an EC private key on curve {_CURVE_NAMES.get(key.curve.name, key.curve.name)}"
    name = type(key).__name__.removeprefix("_").replace("PrivateKey", "")
    return f"a {name} private key"


def _pem_labels(raw: bytes) -> list[str]:
    return [m.group(1).decode("ascii") for m in _PEM_LABEL.finditer(raw)]


_ACCEPTED = (
    "give an unencrypted private key in PEM or DER: PKCS#8 ('-----BEGIN PRIVATE KEY-----'), "
    "PKCS#1 ('-----BEGIN RSA PRIVATE KEY-----') or SEC1 ('-----BEGIN EC PRIVATE KEY-----')"
)


def _load_private_key(raw: bytes, *, needs: str, check: bool = True) -> PrivateKeyTypes:
    """Load a private key from PEM or DER (PKCS#8, PKCS#1, SEC1), or raise
    :class:`UnreadableKeyMaterial` saying what the bytes look like instead.

    ``check=False`` skips OpenSSL's RSA consistency check (about 0.25 s for 4096 bits),
    for material that :func:`validate_material` already checked."""
    skip = not check
    if b"-----BEGIN " in raw:
        labels = _pem_labels(raw)
        if any("ENCRYPTED" in label for label in labels) or b"Proc-Type: 4,ENCRYPTED" in raw:
            raise UnreadableKeyMaterial(
                f"the key material is an encrypted (password-protected) private key; {needs}. "
                "Export it without a password (e.g. `openssl pkey -in key.pem -out plain.pem`) and wrap that"
            )
        if not any("PRIVATE KEY" in label for label in labels):
            found = ", ".join(repr(label) for label in labels) or "no recognisable block"
            hint = (
                " (a public key cannot be imported; wrap the private key)"
                if any("PUBLIC KEY" in label for label in labels)
                else ""
            )
            raise UnreadableKeyMaterial(
                f"the key material is PEM holding {found}{hint}; {needs}; {_ACCEPTED}"
            )
        try:
            return serialization.load_pem_private_key(raw, password=None, unsafe_skip_rsa_key_validation=skip)
        except TypeError:
            raise UnreadableKeyMaterial(
                f"the key material is an encrypted (password-protected) private key; {needs}"
            ) from None
        except (ValueError, UnsupportedAlgorithm):
            raise UnreadableKeyMaterial(
                f"the key material is PEM but its private key could not be read; {needs}; {_ACCEPTED}"
            ) from None
    try:
        return serialization.load_der_private_key(raw, password=None, unsafe_skip_rsa_key_validation=skip)
    except TypeError:
        raise UnreadableKeyMaterial(
            f"the key material is an encrypted (password-protected) private key; {needs}"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        pass
    try:
        serialization.load_der_public_key(raw)
    except (ValueError, UnsupportedAlgorithm):
        pass
    else:
        raise UnreadableKeyMaterial(
            f"the key material is a public key (DER); {needs}: "
            "a public key cannot be imported, wrap the private key"
        )
    hint = (
        " (it is 32 bytes, like a symmetric key; symmetric material goes into an AES_256 key)"
        if len(raw) == AES_256_BYTES
        else ""
    )
    raise UnreadableKeyMaterial(
        f"the key material ({len(raw)} bytes) is neither a PEM nor a DER private key{hint}; "
        f"{needs}; {_ACCEPTED}"
    )


def _check_usage(spec: KeySpec, usage: KeyUsage) -> None:
    if usage not in allowed_usages(spec):
        allowed = ", ".join(allowed_usages(spec))
        raise UnsupportedOperation(f"key usage {usage} does not fit key spec {spec}; it allows {allowed}")


def _validate_aes(raw: bytes) -> bytes:
    if len(raw) == AES_256_BYTES:
        return raw
    message = f"AES_256 key material must be exactly 32 bytes; got {len(raw)} bytes"
    if not raw:
        message += (
            ". `openssl rand -out PlaintextKeyMaterial.bin` without a length writes an empty file; "
            "use `openssl rand -out PlaintextKeyMaterial.bin 32`"
        )
    elif b"-----BEGIN " in raw or (len(raw) > 64 and raw[:1] == b"\x30"):
        message += (
            " (this looks like a PEM or DER private key; asymmetric material goes into an RSA or EC key)"
        )
    else:
        message += "; create it with `openssl rand -out PlaintextKeyMaterial.bin 32`"
    raise UnreadableKeyMaterial(message)


def validate_material(spec: KeySpec, usage: KeyUsage, raw: bytes) -> bytes:
    """Check plaintext material against the key's spec and usage; return its canonical form.

    * ``AES_256``: exactly 32 bytes, returned as they are.
    * RSA / EC: an unencrypted private key in PEM or DER (PKCS#8, PKCS#1 for RSA, SEC1
      for EC) whose type and size match ``spec`` (RSA modulus bits, EC curve); returned
      as unencrypted PKCS#8 DER. RSA keys are consistency-checked by OpenSSL.

    Raises :class:`UnsupportedOperation` when ``usage`` does not fit ``spec``,
    :class:`UnreadableKeyMaterial` (an :class:`InvalidKeyMaterial`) when the bytes are
    not usable key material, :class:`InvalidKeyMaterial` when they are a private key of
    the wrong type or size. Messages never contain key bytes.
    """
    spec = KeySpec(spec)
    usage = KeyUsage(usage)
    _check_usage(spec, usage)
    raw = bytes(raw)
    if spec is KeySpec.AES_256:
        return _validate_aes(raw)

    needs = _spec_needs(spec)
    if not raw:
        raise UnreadableKeyMaterial(f"the key material is empty; {needs}; {_ACCEPTED}")
    key = _load_private_key(raw, needs=needs)
    if spec.is_rsa:
        ok = isinstance(key, rsa.RSAPrivateKey) and key.key_size == spec.rsa_bits
        hint = (
            f"; create one with `openssl genpkey -algorithm RSA -out my_private_key.pem "
            f"-pkeyopt rsa_keygen_bits:{spec.rsa_bits}`"
        )
    else:
        curve = _EC_CURVES[spec][0]
        ok = isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == curve
        hint = (
            "; create one with `openssl genpkey -algorithm EC "
            f"-pkeyopt ec_paramgen_curve:{_EC_CURVES[spec][1]} -out my_private_key.pem`"
        )
    if not ok:
        raise InvalidKeyMaterial(f"the key material is {_describe(key)}, but {needs}{hint}")
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def unwrap_and_validate(
    private_der: bytes, algorithm: WrappingAlgorithm | str, blob: bytes, spec: KeySpec, usage: KeyUsage
) -> bytes:
    """Unwrap an upload (:func:`kms.crypto.wrapping.unwrap`) and validate it
    (:func:`validate_material`); return the canonical material.

    For the guide's OpenSSL format (AES-CBC, no MAC) every :class:`UnreadableKeyMaterial`
    finding is reported as the opaque unwrap failure: otherwise "bad padding" (opaque)
    and "decrypted to something that is not a key" (detailed) would tell a tampering
    caller which CBC paddings are valid — a padding oracle revealing the plaintext.
    Findings about a readable private key of the wrong type or size stay detailed.
    """
    unwrapped = unwrap(private_der, algorithm, blob)
    try:
        return validate_material(spec, usage, unwrapped.material)
    except UnreadableKeyMaterial:
        if unwrapped.authenticated:
            raise
        raise InvalidKeyMaterial(UNWRAP_FAILED_MESSAGE) from None


# --------------------------------------------------------------------------- fingerprints


def _int_bytes(value: int, length: int | None = None) -> bytes:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return value.to_bytes(size, "big")


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _identity(spec: KeySpec, canonical: bytes) -> bytes:
    """The bytes that identify the key, independent of how it was encoded.

    * AES: ``"AES" ‖ key``.
    * RSA: ``"RSA" ‖ n ‖ e ‖ min(p, q)``: n and e fix the key's function; the smaller
      prime pins the factorisation while ignoring whether an encoding carries
      d mod φ(n) or d mod λ(n), or lists the primes in another order.
    * EC: ``"EC" ‖ curve ‖ private scalar`` (fixed length for the curve).

    Every field is length-prefixed.
    """
    spec = KeySpec(spec)
    if spec is KeySpec.AES_256:
        return _field(b"AES") + _field(bytes(canonical))
    # Only numbers are read, so the RSA consistency check (done on import) is skipped.
    key = _load_private_key(bytes(canonical), needs=_spec_needs(spec), check=False)
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        public = numbers.public_numbers
        return (
            _field(b"RSA")
            + _field(_int_bytes(public.n))
            + _field(_int_bytes(public.e))
            + _field(_int_bytes(min(numbers.p, numbers.q)))
        )
    if isinstance(key, ec.EllipticCurvePrivateKey):
        name = key.curve.name
        size = _CURVE_BYTES.get(name, (key.curve.key_size + 7) // 8)
        return (
            _field(b"EC")
            + _field(name.encode("ascii"))
            + _field(_int_bytes(key.private_numbers().private_value, size))
        )
    raise InvalidKeyMaterial(f"the key material is {_describe(key)}; {_spec_needs(spec)}")


def _fingerprint(key: bytes, identity: bytes) -> str:
    return hmac.new(key, _FINGERPRINT_DOMAIN + identity, hashlib.sha256).hexdigest()


def material_fingerprint(key: bytes, spec: KeySpec, canonical: bytes) -> str:
    """Keyed HMAC-SHA256 (hex) identifying the key in ``canonical``.

    ``key`` is a purpose key, ``RootKeyring.derive("material-fingerprint")``, supplied
    by the caller. ``canonical`` is normally :func:`validate_material`'s output, but any
    encoding it accepts gives the same fingerprint for the same key.
    """
    return _fingerprint(key, _identity(spec, canonical))


def fingerprint_matches(keys: list[bytes], spec: KeySpec, canonical: bytes, stored: str) -> bool:
    """Whether ``canonical`` is the key fingerprinted as ``stored`` under any of ``keys``
    (``RootKeyring.derive_all("material-fingerprint")``: root key rotation).

    Comparisons are constant-time and every key is tried (no early exit).
    """
    identity = _identity(spec, canonical)
    expected = stored.strip().lower().encode("ascii", "replace")
    found = False
    for key in keys:
        found |= hmac.compare_digest(_fingerprint(key, identity).encode("ascii"), expected)
    return found


# --------------------------------------------------------------------------- helpers


def public_key_pem(canonical_der: bytes) -> str:
    """PEM SubjectPublicKeyInfo of an asymmetric key's canonical material (PKCS#8 DER;
    PEM input is accepted too)."""
    data = bytes(canonical_der)
    key = _load_private_key(data, needs="a private key is needed", check=False)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise InvalidKeyMaterial(f"the key material is {_describe(key)}; only RSA and EC keys are supported")
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
