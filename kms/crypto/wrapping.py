"""Wrapping keys and the wrapped-material formats of DESIGN §6 (what a user's openssl produces).

The service hands out an RSA wrapping public key (PEM, SubjectPublicKeyInfo) and an
import token; the user encrypts ("wraps") their key material under that public key
and uploads the result. This module

* generates wrapping key pairs (:func:`generate_wrapping_key`);
* unwraps an uploaded blob on the server (:func:`unwrap`, :func:`unwrap_material`),
  accepting exactly the formats of DESIGN §6.1 and §6.2;
* wraps material on the client (:func:`wrap_material`), so a CLI user need not
  script openssl.

Formats (``k`` = wrapping modulus size in bytes: 256, 384 or 512):

1. **Direct OAEP** (``len == k``): RSAES-OAEP of the material itself, MGF1 with the
   same hash, empty label. Seed guide "Symmetric Key", steps 2.1 and 2.2
   (``openssl pkeyutl -encrypt -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:…``).
2. **RSA + AES key wrap** (``len > k``, ``RSA_AES_KEY_WRAP_*`` only): the first ``k``
   bytes are RSAES-OAEP of a 32-byte AES key (guide "Asymmetric Key" steps 1 and 3),
   the rest is either

   * AES-KWP, RFC 5649 (AES Key Wrap with Padding; the ``CKM_RSA_AES_KEY_WRAP`` format
     of AWS, Vault and PKCS#11, and what ``openssl enc -id-aes256-wrap-pad -iv A65959A6
     -K <hex>`` writes), or
   * the guide's step 4 OpenSSL format, recognised by its ``Salted__`` magic:
     ``openssl enc -aes-256-cbc -salt -pass file:aes_key.bin -pbkdf2 -iter 10`` writes
     ``"Salted__" ‖ salt(8) ‖ AES-256-CBC/PKCS#7(material)`` with
     ``key ‖ IV = PBKDF2-HMAC-SHA256(password, salt, iterations, 48 bytes)``. The
     password is the AES key file *cut at its first 0x0A or 0x00 byte*: ``-pass file:``
     reads the first line of the file and uses it as a C string. 10 iterations (the
     guide) and 10000 (openssl's default when ``-iter`` is left out) are accepted.
     Guide step 5 (``cat aes_key_wrapped.bin my_private_key_wrapped.bin``) makes the
     concatenation.

Every unwrap failure raises one :class:`~kms.errors.InvalidKeyMaterial` carrying
:data:`UNWRAP_FAILED_MESSAGE`, whatever step failed, so callers cannot be used as a
padding or decryption oracle (DESIGN §6, last paragraph). The work done does not
depend on where the failure happened where that is cheap to arrange (an OAEP failure
in the hybrid form continues with a random AES key; both PBKDF2 iteration counts are
always tried).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from kms.errors import InvalidKeyMaterial, ValidationError

#: The one message of every unwrap failure (DESIGN §6: no padding oracle). It names no
#: step and no byte of the input.
UNWRAP_FAILED_MESSAGE = (
    "the encrypted key material could not be unwrapped with this import token's wrapping key, "
    "or it does not hold usable key material; wrap it again with the wrapping public key "
    "downloaded with that token, using the token's wrapping algorithm (RSAES_OAEP_* only fits "
    "a 32-byte symmetric key; wrap private keys with RSA_AES_KEY_WRAP_SHA_256 or "
    "RSA_AES_KEY_WRAP_SHA_1), and check that the symmetric key is exactly 32 bytes or the "
    "private key is unencrypted PEM or DER"
)

#: Uploads longer than this are refused before any RSA work (the largest material, an
#: RSA 4096 private key in PEM, is about 3.3 KiB; the web tier limits bodies too).
MAX_WRAPPED_MATERIAL_BYTES = 64 * 1024

#: Size of the AES key carried in the RSA block of the hybrid form (guide step 1:
#: ``openssl rand -out aes_key.bin 32``).
AES_KEY_BYTES = 32

#: ``openssl enc -salt`` output starts with this magic, then 8 bytes of salt.
OPENSSL_SALTED_MAGIC = b"Salted__"
_OPENSSL_SALT_BYTES = 8
#: Iteration counts tried for the guide's format: ``-iter 10`` (guide step 4) first,
#: then 10000, openssl's default for ``-pbkdf2`` without ``-iter``.
OPENSSL_PBKDF2_ITERATIONS: tuple[int, ...] = (10, 10000)


class WrappingKeySpec(StrEnum):
    """RSA size of the wrapping key pair (DESIGN §6)."""

    RSA_2048 = "RSA_2048"
    RSA_3072 = "RSA_3072"
    RSA_4096 = "RSA_4096"

    @property
    def bits(self) -> int:
        return int(self.value.split("_")[1])

    @property
    def modulus_bytes(self) -> int:
        """``k`` of DESIGN §6: the size of one RSA block, and of a direct-OAEP upload."""
        return self.bits // 8


class WrappingAlgorithm(StrEnum):
    """How the user wraps material under the wrapping public key (DESIGN §6)."""

    RSAES_OAEP_SHA_256 = "RSAES_OAEP_SHA_256"
    RSAES_OAEP_SHA_1 = "RSAES_OAEP_SHA_1"
    RSA_AES_KEY_WRAP_SHA_256 = "RSA_AES_KEY_WRAP_SHA_256"
    RSA_AES_KEY_WRAP_SHA_1 = "RSA_AES_KEY_WRAP_SHA_1"

    @property
    def is_rsa_aes_key_wrap(self) -> bool:
        """True for the algorithms that also accept the hybrid RSA + AES form."""
        return self.value.startswith("RSA_AES_KEY_WRAP_")

    @property
    def oaep_hash_name(self) -> str:
        """The openssl ``rsa_oaep_md`` value of this algorithm: ``sha256`` or ``sha1``."""
        return "sha256" if self.value.endswith("SHA_256") else "sha1"


class WrapForm(StrEnum):
    """Which of the DESIGN §6 formats an upload turned out to be."""

    DIRECT_OAEP = "DIRECT_OAEP"
    RSA_AES_KWP = "RSA_AES_KWP"
    RSA_AES_OPENSSL = "RSA_AES_OPENSSL"


@dataclass(frozen=True)
class UnwrappedMaterial:
    """The plaintext material of an upload and the form it came in.

    ``authenticated`` is False only for the guide's OpenSSL format (AES-CBC without a
    MAC, so a tampered upload can decrypt to altered bytes): callers must then report
    *any* "this is not key material" finding with :data:`UNWRAP_FAILED_MESSAGE` too,
    or the difference between that finding and an unwrap failure is a padding oracle.
    See :func:`kms.crypto.material.unwrap_and_validate`.
    """

    material: bytes
    form: WrapForm

    @property
    def authenticated(self) -> bool:
        return self.form is not WrapForm.RSA_AES_OPENSSL

    def __repr__(self) -> str:  # never print material
        return f"UnwrappedMaterial(form={self.form.value}, bytes={len(self.material)})"


# --------------------------------------------------------------------------- parsing


def _normalise(value: str) -> str:
    return value.strip().upper().replace("-", "_")


def parse_wrapping_key_spec(value: object) -> WrappingKeySpec:
    """Parse ``wrapping_key_spec`` (case-insensitive, ``-`` accepted for ``_``).

    Raises :class:`ValidationError` naming the allowed values.
    """
    allowed = ", ".join(WrappingKeySpec)
    if isinstance(value, WrappingKeySpec):
        return value
    if not isinstance(value, str):
        raise ValidationError(f"wrapping_key_spec must be a string, one of: {allowed}")
    try:
        return WrappingKeySpec(_normalise(value))
    except ValueError:
        raise ValidationError(
            f"wrapping_key_spec {value!r} is not supported; use one of: {allowed}"
        ) from None


def parse_wrapping_algorithm(value: object) -> WrappingAlgorithm:
    """Parse ``wrapping_algorithm`` (case-insensitive; the guide's ``RSA-AES-KEY-WRAP-SHA-256``
    spelling is accepted). Raises :class:`ValidationError` naming the allowed values."""
    allowed = ", ".join(WrappingAlgorithm)
    if isinstance(value, WrappingAlgorithm):
        return value
    if not isinstance(value, str):
        raise ValidationError(f"wrapping_algorithm must be a string, one of: {allowed}")
    try:
        return WrappingAlgorithm(_normalise(value))
    except ValueError:
        raise ValidationError(
            f"wrapping_algorithm {value!r} is not supported; use one of: {allowed}"
        ) from None


# --------------------------------------------------------------------------- key pairs


def generate_wrapping_key(spec: WrappingKeySpec | str) -> tuple[bytes, str]:
    """A fresh wrapping key pair: (private key as unencrypted PKCS#8 DER, public key as
    PEM SubjectPublicKeyInfo). The private half must be sealed before it is stored."""
    spec = parse_wrapping_key_spec(spec)
    private = rsa.generate_private_key(public_exponent=65537, key_size=spec.bits)
    private_der = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return private_der, public_pem_of(private)


def public_pem_of(private: rsa.RSAPrivateKey) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def wrapping_public_key_pem(private_der: bytes) -> str:
    """The PEM SubjectPublicKeyInfo of a stored wrapping private key (PKCS#8 DER)."""
    return public_pem_of(_load_wrapping_private_key(private_der))


def _load_wrapping_private_key(private_der: bytes) -> rsa.RSAPrivateKey:
    # Wrapping keys are our own, read back from authenticated (AES-GCM) storage, so the
    # slow RSA consistency check (~0.25 s for 4096 bits) is skipped.
    key = serialization.load_der_private_key(private_der, password=None, unsafe_skip_rsa_key_validation=True)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError("a wrapping private key must be an RSA key")
    return key


def _oaep_hash(algorithm: WrappingAlgorithm) -> hashes.HashAlgorithm:
    if algorithm.oaep_hash_name == "sha256":
        return hashes.SHA256()
    # OAEP-SHA1 is one of the guide's algorithms (steps 2.2 and 3.2); SHA-1 collisions do
    # not weaken OAEP.
    return hashes.SHA1()  # noqa: S303


def _oaep(algorithm: WrappingAlgorithm) -> padding.OAEP:
    # DESIGN §6: OAEP with MGF1 using the same hash and an empty label, which is what
    # `openssl pkeyutl -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256|sha1` does.
    digest = _oaep_hash(algorithm)
    return padding.OAEP(mgf=padding.MGF1(algorithm=digest), algorithm=digest, label=None)


# --------------------------------------------------------------------------- server side


def _unwrap_failed() -> InvalidKeyMaterial:
    return InvalidKeyMaterial(UNWRAP_FAILED_MESSAGE)


def openssl_pass_file_password(aes_key: bytes) -> bytes:
    """The password ``openssl enc -pass file:aes_key.bin`` really uses.

    openssl's ``app_passwd`` reads the first line of the file with ``BIO_gets``, strips the
    ``\\n`` and then treats the buffer as a C string, so the password is the key cut at
    its first 0x0A or 0x00 byte (a key starting with 0x00 makes openssl itself fail with
    "Error reading password from BIO"; one starting with 0x0A gives an empty password,
    which openssl accepts).
    """
    end = len(aes_key)
    for stop in (b"\n", b"\x00"):
        at = aes_key.find(stop)
        if at != -1:
            end = min(end, at)
    return aes_key[:end]


def _openssl_key_iv(password: bytes, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    # `openssl enc -pbkdf2`: PKCS5_PBKDF2_HMAC with the -md digest (sha256 by default in
    # OpenSSL 3) producing key length + IV length bytes = 32 + 16 for aes-256-cbc.
    derived = PBKDF2HMAC(algorithm=hashes.SHA256(), length=48, salt=salt, iterations=iterations).derive(
        password
    )
    return derived[:32], derived[32:]


def _openssl_decrypt_candidates(aes_key: bytes, data: bytes) -> list[bytes | None]:
    """Decrypt the guide's ``Salted__`` format once per iteration count; ``None`` where the
    PKCS#7 padding was wrong. Always does the work for every count (no timing signal)."""
    header = len(OPENSSL_SALTED_MAGIC) + _OPENSSL_SALT_BYTES
    salt = data[len(OPENSSL_SALTED_MAGIC) : header]
    body = data[header:]
    if len(salt) != _OPENSSL_SALT_BYTES or not body or len(body) % 16:
        body = bytes(16)  # keep the work uniform; the result is discarded below
        valid_shape = False
    else:
        valid_shape = True
    password = openssl_pass_file_password(aes_key)
    results: list[bytes | None] = []
    for iterations in OPENSSL_PBKDF2_ITERATIONS:
        key, iv = _openssl_key_iv(password, salt.ljust(_OPENSSL_SALT_BYTES, b"\0"), iterations)
        decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        padded = decryptor.update(body) + decryptor.finalize()
        unpadder = sym_padding.PKCS7(128).unpadder()
        try:
            plain: bytes | None = unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            plain = None
        results.append(plain if valid_shape else None)
    return results


def _looks_like_material(data: bytes) -> bool:
    """Cheap plausibility test used only to choose between two CBC decryptions whose
    padding both checked out (a wrong key passes PKCS#7 about once in 256 tries)."""
    if len(data) == AES_KEY_BYTES:
        return True
    if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"-----BEGIN "):
        return True
    # DER: one SEQUENCE whose encoded length covers exactly the whole input.
    if len(data) < 2 or data[0] != 0x30:
        return False
    first = data[1]
    if first < 0x80:
        return 2 + first == len(data)
    count = first & 0x7F
    if count == 0 or count > 4 or len(data) < 2 + count:
        return False
    return 2 + count + int.from_bytes(data[2 : 2 + count], "big") == len(data)


def _choose_openssl_candidate(candidates: list[bytes | None]) -> bytes | None:
    valid = [c for c in candidates if c is not None]
    if not valid:
        return None
    for candidate in valid:
        if _looks_like_material(candidate):
            return candidate
    return valid[0]


def unwrap(private_der: bytes, algorithm: WrappingAlgorithm | str, blob: bytes) -> UnwrappedMaterial:
    """Unwrap an upload per DESIGN §6.1 / §6.2 and say which form it had.

    ``private_der`` is the wrapping private key (PKCS#8 DER) that belongs to the import
    token; ``algorithm`` is the token's wrapping algorithm. Any failure whatsoever raises
    :class:`InvalidKeyMaterial` with :data:`UNWRAP_FAILED_MESSAGE` and no chained cause.
    The material itself is not checked here (see :mod:`kms.crypto.material`).
    """
    algorithm = parse_wrapping_algorithm(algorithm)
    private = _load_wrapping_private_key(private_der)
    k = (private.key_size + 7) // 8
    oaep = _oaep(algorithm)
    blob = bytes(blob)
    if not blob or len(blob) < k or len(blob) > MAX_WRAPPED_MATERIAL_BYTES:
        raise _unwrap_failed()

    if len(blob) == k:
        # §6.1 direct OAEP: guide "Symmetric Key" step 2.1 (RSAES_OAEP_SHA_256) and 2.2
        # (RSA_AES_KEY_WRAP_SHA_1 with rsa_oaep_md:sha1); accepted under all four algorithms.
        try:
            return UnwrappedMaterial(private.decrypt(blob, oaep), WrapForm.DIRECT_OAEP)
        except ValueError:
            raise _unwrap_failed() from None

    if not algorithm.is_rsa_aes_key_wrap:
        raise _unwrap_failed()  # RSAES_OAEP_* has no hybrid form

    # §6.2: guide step 5 concatenation = OAEP(aes key) (step 3) ‖ AES-wrapped material (step 4).
    head, rest = blob[:k], blob[k:]
    try:
        aes_key = private.decrypt(head, oaep)
        ok = len(aes_key) == AES_KEY_BYTES
    except ValueError:
        aes_key, ok = b"", False
    if not ok:
        aes_key = os.urandom(AES_KEY_BYTES)  # carry on with a random key: same work, certain failure

    if rest.startswith(OPENSSL_SALTED_MAGIC):
        # Guide step 4: `openssl enc -aes-256-cbc -salt ... -pass file:aes_key.bin -pbkdf2 -iter 10`.
        chosen = _choose_openssl_candidate(_openssl_decrypt_candidates(aes_key, rest))
        if not ok or chosen is None:
            raise _unwrap_failed()
        return UnwrappedMaterial(chosen, WrapForm.RSA_AES_OPENSSL)

    # RFC 5649 AES Key Wrap with Padding (AIV 0xA65959A6 ‖ 32-bit MLI, §3), integrity
    # checked by the unwrap itself.
    try:
        material = keywrap.aes_key_unwrap_with_padding(aes_key, rest)
    except (keywrap.InvalidUnwrap, ValueError):
        raise _unwrap_failed() from None
    if not ok:
        raise _unwrap_failed()
    return UnwrappedMaterial(material, WrapForm.RSA_AES_KWP)


def unwrap_material(private_der: bytes, algorithm: WrappingAlgorithm | str, blob: bytes) -> bytes:
    """The plaintext material of an upload (see :func:`unwrap` for the contract).

    Prefer :func:`kms.crypto.material.unwrap_and_validate`, which also keeps the guide's
    unauthenticated OpenSSL format from becoming a padding oracle.
    """
    return unwrap(private_der, algorithm, blob).material


# --------------------------------------------------------------------------- client side

WRAP_STYLES = ("auto", "direct", "kwp", "openssl")


def _load_wrapping_public_key(public_pem: str | bytes) -> rsa.RSAPublicKey:
    data = public_pem.encode("ascii") if isinstance(public_pem, str) else public_pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise ValidationError("the wrapping public key is not a PEM public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValidationError("the wrapping public key must be an RSA public key")
    return key


def max_direct_oaep_bytes(modulus_bytes: int, algorithm: WrappingAlgorithm | str) -> int:
    """Largest material one RSAES-OAEP block carries: k - 2·hLen - 2 (RFC 8017 §7.1.1)."""
    algorithm = parse_wrapping_algorithm(algorithm)
    h_len = 32 if algorithm.oaep_hash_name == "sha256" else 20
    return modulus_bytes - 2 * h_len - 2


def _openssl_style_aes_key() -> bytes:
    # A key without 0x00 / 0x0A, so openssl's `-pass file:` would use all 32 bytes and
    # `openssl enc -d -pass file:aes_key.bin` decrypts what we write.
    while True:
        key = os.urandom(AES_KEY_BYTES)
        if b"\x00" not in key and b"\n" not in key:
            return key


def openssl_salted_encrypt(password: bytes, plaintext: bytes, *, iterations: int = 10) -> bytes:
    """What ``openssl enc -aes-256-cbc -salt -pbkdf2 -iter N -pass ...`` writes (guide step 4):
    ``"Salted__" ‖ salt(8) ‖ AES-256-CBC/PKCS#7``. ``password`` is used as given (apply
    :func:`openssl_pass_file_password` first to mimic ``-pass file:``)."""
    salt = os.urandom(_OPENSSL_SALT_BYTES)
    key, iv = _openssl_key_iv(password, salt, iterations)
    padder = sym_padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return OPENSSL_SALTED_MAGIC + salt + encryptor.update(padded) + encryptor.finalize()


def wrap_material(
    public_pem: str | bytes, algorithm: WrappingAlgorithm | str, material: bytes, *, style: str = "auto"
) -> bytes:
    """Wrap material client-side exactly as :func:`unwrap` expects it.

    * ``RSAES_OAEP_*``: direct OAEP; the material must fit one block (32-byte symmetric
      keys do, private keys do not). ``style`` must be ``auto`` or ``direct``.
    * ``RSA_AES_KEY_WRAP_*``: ``auto`` uses direct OAEP for 32-byte material (as the
      guide's step 2.2 does) and AES-KWP otherwise; ``direct`` forces direct OAEP;
      ``kwp`` = OAEP(fresh AES key) ‖ RFC 5649 AES-KWP(material); ``openssl`` =
      OAEP(fresh AES key) ‖ the guide's ``Salted__`` format with 10 PBKDF2 iterations.

    Raises :class:`ValidationError` for an unusable public key, style or size.
    """
    algorithm = parse_wrapping_algorithm(algorithm)
    if style not in WRAP_STYLES:
        raise ValidationError(f"wrap style {style!r} is not supported; use one of: {', '.join(WRAP_STYLES)}")
    public = _load_wrapping_public_key(public_pem)
    k = (public.key_size + 7) // 8
    oaep = _oaep(algorithm)
    material = bytes(material)
    if not material:
        raise ValidationError("there is no key material to wrap (the input is empty)")

    if not algorithm.is_rsa_aes_key_wrap and style not in ("auto", "direct"):
        raise ValidationError(
            f"wrap style {style!r} needs RSA_AES_KEY_WRAP_SHA_256 or RSA_AES_KEY_WRAP_SHA_1; "
            f"{algorithm} only wraps directly with RSAES-OAEP"
        )
    direct = style == "direct" or (
        style == "auto" and (not algorithm.is_rsa_aes_key_wrap or len(material) == 32)
    )
    if direct:
        limit = max_direct_oaep_bytes(k, algorithm)
        if len(material) > limit:
            raise ValidationError(
                f"{len(material)} bytes of key material do not fit in one RSAES-OAEP block of this "
                f"{public.key_size}-bit wrapping key with {algorithm.oaep_hash_name} "
                f"(at most {limit} bytes); "
                "private keys need RSA_AES_KEY_WRAP_SHA_256 or RSA_AES_KEY_WRAP_SHA_1"
            )
        return public.encrypt(material, oaep)

    if style == "openssl":
        aes_key = _openssl_style_aes_key()
        body = openssl_salted_encrypt(openssl_pass_file_password(aes_key), material, iterations=10)
    else:
        aes_key = os.urandom(AES_KEY_BYTES)
        body = keywrap.aes_key_wrap_with_padding(aes_key, material)
    return public.encrypt(aes_key, oaep) + body
