"""Using keys: encrypt/decrypt, data keys, sign/verify, public key (DESIGN §5 "Crypto").

Pure functions over key material (raw 32 bytes for ``AES_256``, PKCS#8 DER for RSA
and EC, as :mod:`kms.crypto.keygen` makes it); no web, database or queue here.

Ciphertext format
-----------------
Every ciphertext describes itself, so that decrypt can find the key that made it::

    version (1 byte, = 1)
    ‖ key id (16 bytes, the raw UUID)
    ‖ material version (uint32, big endian)
    ‖ algorithm (1 byte: 1 = SYMMETRIC_DEFAULT, 2 = RSAES_OAEP_SHA_256)
    ‖ body

* ``SYMMETRIC_DEFAULT`` (``AES_256`` keys): body = 96-bit random nonce ‖
  AES-256-GCM(plaintext) ‖ 128-bit tag. The associated data is
  ``header (22 bytes) ‖ len(aad) (uint32, big endian) ‖ aad``: any change to the
  header, or another aad, fails authentication.
* ``RSAES_OAEP_SHA_256`` (RSA keys with usage ``ENCRYPT_DECRYPT``): body =
  RSAES-OAEP with SHA-256, MGF1-SHA-256 and an empty label, exactly ``k`` bytes
  (the modulus size). It is what ``openssl pkeyutl -encrypt -pkeyopt
  rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256`` writes, so whoever holds the
  private key (e.g. imported it) can decrypt the body offline. For that reason the
  header is not bound into the OAEP label; it is checked against the key instead
  (key id, material version and algorithm must match, or the ciphertext is
  refused), and a rewritten header can only point to another key, under which the
  OAEP body does not decrypt.

  An ``aad`` is refused for RSA keys (:class:`~kms.errors.UnsupportedOperation`):
  standard OAEP has no associated data, and smuggling it into the label would make
  the body unreadable to plain openssl. AWS KMS refuses an encryption context for
  asymmetric keys the same way.

Every decryption failure (malformed, truncated, another key's or version's,
tampered, wrong aad) raises one :class:`~kms.errors.InvalidCiphertext` with one
fixed message, so the answer reveals nothing about which check failed.

Signatures
----------
RSASSA-PSS uses MGF1 with the message hash and a salt as long as the digest
(``openssl ... -sigopt rsa_pss_saltlen:digest``); ECDSA signatures are DER
(``Ecdsa-Sig-Value``), and each curve goes with one hash as in AWS KMS: P-256 →
SHA-256, P-384 → SHA-384, P-521 → SHA-512. ``RAW`` messages are hashed here (at
most 4096 bytes); a ``DIGEST`` message is the hash already, exactly as long as the
algorithm's digest.
"""

from __future__ import annotations

import os
import struct
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import NoReturn

from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kms.errors import InvalidCiphertext, InvalidKeyMaterial, UnsupportedOperation, ValidationError
from kms.specs import KeySpec, KeyUsage, allowed_usages, parse_enum

__all__ = [
    "CIPHERTEXT_VERSION",
    "HEADER_LENGTH",
    "INVALID_CIPHERTEXT_MESSAGE",
    "MAX_AAD_BYTES",
    "MAX_DATA_KEY_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_PLAINTEXT_BYTES",
    "CiphertextHeader",
    "EncryptionAlgorithm",
    "LoadedKey",
    "MessageType",
    "SigningAlgorithm",
    "decrypt",
    "encrypt",
    "encryption_algorithms_for",
    "generate_data_key",
    "load_key",
    "parse_ciphertext_header",
    "parse_encryption_algorithm",
    "parse_message_type",
    "parse_signing_algorithm",
    "public_key_pem",
    "rsa_max_plaintext_bytes",
    "sign",
    "signing_algorithms_for",
    "verify",
]

CIPHERTEXT_VERSION = 1
#: version(1) ‖ key id(16) ‖ material version(4) ‖ algorithm(1)
HEADER_LENGTH = 1 + 16 + 4 + 1
_HEADER = struct.Struct(">B16sIB")
_NONCE_BYTES = 12
_TAG_BYTES = 16
_OAEP_OVERHEAD = 2 * 32 + 2  # 2·hLen + 2 for SHA-256

MAX_PLAINTEXT_BYTES = 4096
MAX_MESSAGE_BYTES = 4096
MAX_DATA_KEY_BYTES = 1024
MAX_AAD_BYTES = 8192
_MAX_UINT32 = 0xFFFFFFFF

INVALID_CIPHERTEXT_MESSAGE = (
    "the ciphertext could not be decrypted with this key; check the ciphertext, the key and the aad"
)


class EncryptionAlgorithm(StrEnum):
    SYMMETRIC_DEFAULT = "SYMMETRIC_DEFAULT"
    RSAES_OAEP_SHA_256 = "RSAES_OAEP_SHA_256"


_ALGORITHM_BYTE: dict[EncryptionAlgorithm, int] = {
    EncryptionAlgorithm.SYMMETRIC_DEFAULT: 1,
    EncryptionAlgorithm.RSAES_OAEP_SHA_256: 2,
}
_ALGORITHM_BY_BYTE = {b: a for a, b in _ALGORITHM_BYTE.items()}


class SigningAlgorithm(StrEnum):
    RSASSA_PSS_SHA_256 = "RSASSA_PSS_SHA_256"
    RSASSA_PSS_SHA_384 = "RSASSA_PSS_SHA_384"
    RSASSA_PSS_SHA_512 = "RSASSA_PSS_SHA_512"
    RSASSA_PKCS1_V1_5_SHA_256 = "RSASSA_PKCS1_V1_5_SHA_256"
    RSASSA_PKCS1_V1_5_SHA_384 = "RSASSA_PKCS1_V1_5_SHA_384"
    RSASSA_PKCS1_V1_5_SHA_512 = "RSASSA_PKCS1_V1_5_SHA_512"
    ECDSA_SHA_256 = "ECDSA_SHA_256"
    ECDSA_SHA_384 = "ECDSA_SHA_384"
    ECDSA_SHA_512 = "ECDSA_SHA_512"

    @property
    def digest_bytes(self) -> int:
        """Length of the algorithm's hash: what a ``DIGEST`` message must be."""
        return int(self.value.rsplit("_", 1)[1]) // 8


class MessageType(StrEnum):
    RAW = "RAW"
    DIGEST = "DIGEST"


_RSA_SIGNING = [
    SigningAlgorithm.RSASSA_PSS_SHA_256,
    SigningAlgorithm.RSASSA_PSS_SHA_384,
    SigningAlgorithm.RSASSA_PSS_SHA_512,
    SigningAlgorithm.RSASSA_PKCS1_V1_5_SHA_256,
    SigningAlgorithm.RSASSA_PKCS1_V1_5_SHA_384,
    SigningAlgorithm.RSASSA_PKCS1_V1_5_SHA_512,
]
_EC_SIGNING: dict[KeySpec, SigningAlgorithm] = {
    KeySpec.EC_P256: SigningAlgorithm.ECDSA_SHA_256,
    KeySpec.EC_P384: SigningAlgorithm.ECDSA_SHA_384,
    KeySpec.EC_P521: SigningAlgorithm.ECDSA_SHA_512,
}
_EC_CURVE_NAMES: dict[KeySpec, str] = {
    KeySpec.EC_P256: ec.SECP256R1.name,
    KeySpec.EC_P384: ec.SECP384R1.name,
    KeySpec.EC_P521: ec.SECP521R1.name,
}


def _hash_for(algorithm: SigningAlgorithm) -> hashes.HashAlgorithm:
    bits = algorithm.digest_bytes * 8
    if bits == 256:
        return hashes.SHA256()
    if bits == 384:
        return hashes.SHA384()
    return hashes.SHA512()


# --------------------------------------------------------------------- enum parsing


def parse_signing_algorithm(value: object) -> SigningAlgorithm:
    return parse_enum(SigningAlgorithm, value, "signing_algorithm")


def parse_message_type(value: object | None) -> MessageType:
    """``None`` means the default, ``RAW``."""
    return MessageType.RAW if value is None else parse_enum(MessageType, value, "message_type")


def parse_encryption_algorithm(value: object) -> EncryptionAlgorithm:
    return parse_enum(EncryptionAlgorithm, value, "encryption_algorithm")


# --------------------------------------------------------------------- what a key can do


def signing_algorithms_for(spec: KeySpec, usage: KeyUsage | None = None) -> list[SigningAlgorithm]:
    """Signing algorithms of a spec (none if ``usage`` is given and is not ``SIGN_VERIFY``)."""
    if usage is not None and usage is not KeyUsage.SIGN_VERIFY:
        return []
    if spec.is_rsa:
        return list(_RSA_SIGNING)
    if spec.is_ec:
        return [_EC_SIGNING[spec]]
    return []


def encryption_algorithms_for(spec: KeySpec, usage: KeyUsage) -> list[EncryptionAlgorithm]:
    if usage is not KeyUsage.ENCRYPT_DECRYPT:
        return []
    if spec is KeySpec.AES_256:
        return [EncryptionAlgorithm.SYMMETRIC_DEFAULT]
    if spec.is_rsa:
        return [EncryptionAlgorithm.RSAES_OAEP_SHA_256]
    return []


def rsa_max_plaintext_bytes(spec: KeySpec) -> int:
    """Largest plaintext RSAES-OAEP-SHA-256 fits under an RSA spec: ``k - 66``."""
    return spec.rsa_bits // 8 - _OAEP_OVERHEAD


def _capabilities(spec: KeySpec, usage: KeyUsage) -> str:
    if usage is KeyUsage.SIGN_VERIFY:
        algs = ", ".join(signing_algorithms_for(spec, usage))
        return f"a {spec} key with usage SIGN_VERIFY can only sign and verify ({algs})"
    if spec is KeySpec.AES_256:
        return "an AES_256 key can only encrypt, decrypt and generate data keys"
    return (
        f"a {spec} key with usage ENCRYPT_DECRYPT can only encrypt and decrypt "
        f"({EncryptionAlgorithm.RSAES_OAEP_SHA_256}) and give its public key"
    )


# --------------------------------------------------------------------- ciphertext header


@dataclass(frozen=True, slots=True)
class CiphertextHeader:
    key_id: str
    material_version: int
    algorithm: EncryptionAlgorithm


def _invalid() -> NoReturn:
    raise InvalidCiphertext(INVALID_CIPHERTEXT_MESSAGE)


def _as_bytes(value: object, field: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise ValidationError(f"{field} must be bytes")


def parse_ciphertext_header(blob: bytes) -> CiphertextHeader:
    """Read which key, material version and algorithm made a ciphertext.

    Raises :class:`InvalidCiphertext` (the one fixed message) for anything that is
    not a ciphertext of this service. The header is not authenticated yet: it only
    says which key to try.
    """
    if not isinstance(blob, bytes | bytearray | memoryview) or len(blob) <= HEADER_LENGTH:
        _invalid()
    version, raw_id, material_version, alg_byte = _HEADER.unpack_from(bytes(blob[:HEADER_LENGTH]))
    algorithm = _ALGORITHM_BY_BYTE.get(alg_byte)
    if version != CIPHERTEXT_VERSION or algorithm is None:
        _invalid()
    return CiphertextHeader(str(uuid.UUID(bytes=raw_id)), material_version, algorithm)


def _parse_key_id(key_id: object) -> uuid.UUID:
    if isinstance(key_id, uuid.UUID):
        return key_id
    if not isinstance(key_id, str):
        raise ValidationError("key_id must be a UUID string")
    try:
        return uuid.UUID(key_id)
    except ValueError:
        raise ValidationError(f"key_id {key_id!r} is not a UUID") from None


def _check_material_version(material_version: object) -> int:
    if (
        not isinstance(material_version, int)
        or isinstance(material_version, bool)
        or not 0 <= material_version <= _MAX_UINT32
    ):
        raise ValidationError(f"material_version must be an integer from 0 to {_MAX_UINT32}")
    return material_version


# --------------------------------------------------------------------- loaded keys

_PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _load_private_key(spec: KeySpec, material: bytes, *, trusted: bool) -> _PrivateKey:
    problem = f"the stored key material is not a valid {spec} private key"
    try:
        key = serialization.load_der_private_key(
            material, password=None, unsafe_skip_rsa_key_validation=trusted
        )
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidKeyMaterial(problem) from None
    if spec.is_rsa:
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size != spec.rsa_bits:
            raise InvalidKeyMaterial(problem)
        return key
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != _EC_CURVE_NAMES[spec]:
        raise InvalidKeyMaterial(problem)
    return key


class LoadedKey:
    """One key version, parsed once and ready to use; safe to cache and share between threads.

    It keeps the AES-GCM context or the parsed private key, never the material
    bytes, and shows neither in ``repr``/``str``. It refuses to be pickled, so it
    cannot leak into a message queue or a cache on disk by accident.
    """

    __slots__ = ("_aead", "_key_uuid", "_private", "key_id", "material_version", "spec", "usage")

    def __init__(
        self,
        spec: KeySpec,
        usage: KeyUsage,
        material: bytes,
        *,
        key_id: str,
        material_version: int,
        trusted_material: bool = False,
    ) -> None:
        spec = KeySpec(spec)
        usage = KeyUsage(usage)
        if usage not in allowed_usages(spec):
            raise UnsupportedOperation(
                f"key usage {usage} does not fit key spec {spec}; "
                f"{spec} allows {', '.join(allowed_usages(spec))}"
            )
        self._key_uuid = _parse_key_id(key_id)
        self.key_id = str(self._key_uuid)
        self.material_version = _check_material_version(material_version)
        self.spec = spec
        self.usage = usage
        material = _as_bytes(material, "material")
        self._aead: AESGCM | None = None
        self._private: _PrivateKey | None = None
        if spec is KeySpec.AES_256:
            if len(material) != 32:
                raise InvalidKeyMaterial("the stored key material is not a valid AES_256 key (32 bytes)")
            self._aead = AESGCM(material)
        else:
            self._private = _load_private_key(spec, material, trusted=trusted_material)

    def __repr__(self) -> str:
        return (
            f"LoadedKey(key_id={self.key_id!r}, material_version={self.material_version}, "
            f"spec={self.spec.value}, usage={self.usage.value})"
        )

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a LoadedKey holds key material and cannot be pickled")

    # -- what it can do

    @property
    def signing_algorithms(self) -> list[SigningAlgorithm]:
        return signing_algorithms_for(self.spec, self.usage)

    @property
    def encryption_algorithms(self) -> list[EncryptionAlgorithm]:
        return encryption_algorithms_for(self.spec, self.usage)

    def _header(self, algorithm: EncryptionAlgorithm) -> bytes:
        return _HEADER.pack(
            CIPHERTEXT_VERSION, self._key_uuid.bytes, self.material_version, _ALGORITHM_BYTE[algorithm]
        )

    def _encryption_algorithm(self, verb: str) -> EncryptionAlgorithm:
        algs = self.encryption_algorithms
        if not algs:
            raise UnsupportedOperation(f"cannot {verb}: {_capabilities(self.spec, self.usage)}")
        return algs[0]

    def _check_aad(self, aad: object, algorithm: EncryptionAlgorithm) -> bytes:
        data = _as_bytes(aad, "aad")
        if len(data) > MAX_AAD_BYTES:
            raise ValidationError(f"aad must be at most {MAX_AAD_BYTES} bytes; it is {len(data)} bytes")
        if data and algorithm is not EncryptionAlgorithm.SYMMETRIC_DEFAULT:
            raise UnsupportedOperation(
                f"aad is not supported with {self.spec} keys: RSAES-OAEP has no associated data; "
                "leave aad out, or use an AES_256 key (e.g. a data key) to bind aad"
            )
        return data

    @staticmethod
    def _gcm_associated_data(header: bytes, aad: bytes) -> bytes:
        return header + struct.pack(">I", len(aad)) + aad

    # -- encryption

    def encrypt(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        algorithm = self._encryption_algorithm("encrypt")
        data = _as_bytes(plaintext, "plaintext")
        if not 1 <= len(data) <= MAX_PLAINTEXT_BYTES:
            raise ValidationError(
                f"plaintext must be 1 to {MAX_PLAINTEXT_BYTES} bytes; it is {len(data)} bytes"
            )
        aad_bytes = self._check_aad(aad, algorithm)
        header = self._header(algorithm)
        if algorithm is EncryptionAlgorithm.SYMMETRIC_DEFAULT:
            assert self._aead is not None
            nonce = os.urandom(_NONCE_BYTES)
            body = self._aead.encrypt(nonce, data, self._gcm_associated_data(header, aad_bytes))
            return header + nonce + body
        limit = rsa_max_plaintext_bytes(self.spec)
        if len(data) > limit:
            raise ValidationError(
                f"plaintext is {len(data)} bytes; a {self.spec} key encrypts at most {limit} bytes with "
                f"{algorithm}; encrypt larger data under a data key"
            )
        assert isinstance(self._private, rsa.RSAPrivateKey)
        return header + self._private.public_key().encrypt(data, _oaep())

    def decrypt(self, ciphertext: bytes, aad: bytes = b"") -> bytes:
        algorithm = self._encryption_algorithm("decrypt")
        aad_bytes = self._check_aad(aad, algorithm)
        header = parse_ciphertext_header(ciphertext)
        blob = bytes(ciphertext)
        if (
            header.algorithm is not algorithm
            or uuid.UUID(header.key_id) != self._key_uuid
            or header.material_version != self.material_version
        ):
            _invalid()
        head, body = blob[:HEADER_LENGTH], blob[HEADER_LENGTH:]
        if algorithm is EncryptionAlgorithm.SYMMETRIC_DEFAULT:
            assert self._aead is not None
            if len(body) < _NONCE_BYTES + _TAG_BYTES + 1:
                _invalid()
            try:
                return self._aead.decrypt(
                    body[:_NONCE_BYTES], body[_NONCE_BYTES:], self._gcm_associated_data(head, aad_bytes)
                )
            except InvalidTag:
                _invalid()
        assert isinstance(self._private, rsa.RSAPrivateKey)
        if len(body) != self.spec.rsa_bits // 8:
            _invalid()
        try:
            return self._private.decrypt(body, _oaep())
        except ValueError:
            _invalid()

    def generate_data_key(self, number_of_bytes: int = 32, aad: bytes = b"") -> tuple[bytes, bytes]:
        """A fresh random data key: ``(plaintext, ciphertext under this key)``.

        Only ``AES_256`` keys make data keys, as in AWS KMS: an RSA key's public half
        is public, so anyone can wrap a key under it without the service.
        """
        if self.spec is not KeySpec.AES_256:
            raise UnsupportedOperation(
                f"cannot generate a data key: only AES_256 keys generate data keys; "
                f"{_capabilities(self.spec, self.usage)}"
            )
        if (
            not isinstance(number_of_bytes, int)
            or isinstance(number_of_bytes, bool)
            or not 1 <= number_of_bytes <= MAX_DATA_KEY_BYTES
        ):
            raise ValidationError(f"number_of_bytes must be an integer from 1 to {MAX_DATA_KEY_BYTES}")
        plaintext = os.urandom(number_of_bytes)
        return plaintext, self.encrypt(plaintext, aad)

    # -- signatures

    def _signing_setup(
        self, message: bytes, message_type: MessageType | str, algorithm: SigningAlgorithm | str
    ) -> tuple[bytes, SigningAlgorithm, hashes.HashAlgorithm | utils.Prehashed]:
        alg = parse_signing_algorithm(algorithm)
        kind = parse_message_type(message_type)
        allowed = self.signing_algorithms
        if not allowed:
            raise UnsupportedOperation(f"cannot sign or verify: {_capabilities(self.spec, self.usage)}")
        if alg not in allowed:
            raise UnsupportedOperation(
                f"signing_algorithm {alg} does not fit a {self.spec} key; use one of: {', '.join(allowed)}"
            )
        data = _as_bytes(message, "message")
        digest = _hash_for(alg)
        if kind is MessageType.DIGEST:
            if len(data) != alg.digest_bytes:
                raise ValidationError(
                    f"a DIGEST message for {alg} must be exactly {alg.digest_bytes} bytes "
                    f"(a {digest.name.upper()} digest); it is {len(data)} bytes"
                )
            return data, alg, utils.Prehashed(digest)
        if not 1 <= len(data) <= MAX_MESSAGE_BYTES:
            raise ValidationError(
                f"a RAW message must be 1 to {MAX_MESSAGE_BYTES} bytes; it is {len(data)} bytes; "
                "for longer messages hash them and sign with message_type DIGEST"
            )
        return data, alg, digest

    def sign(
        self,
        *,
        message: bytes,
        message_type: MessageType | str = MessageType.RAW,
        algorithm: SigningAlgorithm | str,
    ) -> bytes:
        data, alg, hash_arg = self._signing_setup(message, message_type, algorithm)
        key = self._private
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, _rsa_padding(alg), hash_arg)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key.sign(data, ec.ECDSA(hash_arg))

    def verify(
        self,
        *,
        message: bytes,
        message_type: MessageType | str = MessageType.RAW,
        algorithm: SigningAlgorithm | str,
        signature: bytes,
    ) -> bool:
        """True if ``signature`` is valid; False for any bad signature (never raises for one)."""
        data, alg, hash_arg = self._signing_setup(message, message_type, algorithm)
        sig = _as_bytes(signature, "signature")
        key = self._private
        try:
            if isinstance(key, rsa.RSAPrivateKey):
                key.public_key().verify(sig, data, _rsa_padding(alg), hash_arg)
            else:
                assert isinstance(key, ec.EllipticCurvePrivateKey)
                key.public_key().verify(sig, data, ec.ECDSA(hash_arg))
        except (InvalidSignature, ValueError):
            return False
        return True

    # -- public key

    def public_key_pem(self) -> str:
        """The public key as SubjectPublicKeyInfo PEM (``-----BEGIN PUBLIC KEY-----``)."""
        if self._private is None:
            raise UnsupportedOperation(
                f"{self.spec} is a symmetric key spec: it has no public key; only RSA and EC keys have one"
            )
        return (
            self._private.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode("ascii")
        )


def _oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def _rsa_padding(algorithm: SigningAlgorithm) -> padding.AsymmetricPadding:
    if algorithm.value.startswith("RSASSA_PSS_"):
        return padding.PSS(mgf=padding.MGF1(_hash_for(algorithm)), salt_length=padding.PSS.DIGEST_LENGTH)
    return padding.PKCS1v15()


def load_key(
    spec: KeySpec,
    usage: KeyUsage,
    material: bytes,
    *,
    key_id: str,
    material_version: int,
    trusted_material: bool = False,
) -> LoadedKey:
    """Parse material once; cache the result per (key id, material version).

    Loading an RSA private key runs OpenSSL's full consistency check of the key,
    which is slow (about 30 ms for RSA_2048, 240 ms for RSA_4096). Material that
    this service generated or checked at import, and that was read back from its
    root-key-authenticated store, may pass ``trusted_material=True`` to skip that
    check (then loading takes microseconds). Never pass it for material that came
    from a caller.

    Raises :class:`InvalidKeyMaterial` if the material does not fit the spec,
    :class:`UnsupportedOperation` if the usage does not fit it.
    """
    return LoadedKey(
        spec,
        usage,
        material,
        key_id=key_id,
        material_version=material_version,
        trusted_material=trusted_material,
    )


# A placeholder identity for operations that never write a ciphertext header.
_NO_KEY_ID = str(uuid.UUID(int=0))


# --------------------------------------------------------------------- module-level verbs


def encrypt(
    spec: KeySpec,
    usage: KeyUsage,
    material: bytes,
    *,
    key_id: str,
    material_version: int,
    plaintext: bytes,
    aad: bytes = b"",
) -> bytes:
    return load_key(spec, usage, material, key_id=key_id, material_version=material_version).encrypt(
        plaintext, aad
    )


def decrypt(
    spec: KeySpec,
    usage: KeyUsage,
    material: bytes,
    *,
    key_id: str,
    material_version: int,
    ciphertext: bytes,
    aad: bytes = b"",
) -> bytes:
    return load_key(spec, usage, material, key_id=key_id, material_version=material_version).decrypt(
        ciphertext, aad
    )


def generate_data_key(
    spec: KeySpec,
    usage: KeyUsage,
    material: bytes,
    *,
    key_id: str,
    material_version: int,
    number_of_bytes: int = 32,
    aad: bytes = b"",
) -> tuple[bytes, bytes]:
    return load_key(
        spec, usage, material, key_id=key_id, material_version=material_version
    ).generate_data_key(number_of_bytes, aad)


def sign(
    spec: KeySpec,
    usage: KeyUsage,
    material: bytes,
    *,
    message: bytes,
    message_type: MessageType | str = MessageType.RAW,
    algorithm: SigningAlgorithm | str,
) -> bytes:
    key = load_key(spec, usage, material, key_id=_NO_KEY_ID, material_version=0)
    return key.sign(message=message, message_type=message_type, algorithm=algorithm)


def verify(
    spec: KeySpec,
    usage: KeyUsage,
    material: bytes,
    *,
    message: bytes,
    message_type: MessageType | str = MessageType.RAW,
    algorithm: SigningAlgorithm | str,
    signature: bytes,
) -> bool:
    key = load_key(spec, usage, material, key_id=_NO_KEY_ID, material_version=0)
    return key.verify(message=message, message_type=message_type, algorithm=algorithm, signature=signature)


def public_key_pem(spec: KeySpec, material: bytes, usage: KeyUsage | None = None) -> str:
    """SubjectPublicKeyInfo PEM of an RSA or EC key; :class:`UnsupportedOperation` for AES_256."""
    spec = KeySpec(spec)
    if spec is KeySpec.AES_256:
        raise UnsupportedOperation(
            "AES_256 is a symmetric key spec: it has no public key; only RSA and EC keys have one"
        )
    usage = allowed_usages(spec)[0] if usage is None else usage
    return load_key(spec, usage, material, key_id=_NO_KEY_ID, material_version=0).public_key_pem()
