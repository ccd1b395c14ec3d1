"""Using keys (kms.crypto.usage): round trips, the ciphertext format, tampering, misuse,
and known answers against the real openssl command line."""

from __future__ import annotations

import base64
import hashlib
import pickle
import shutil
import struct
import subprocess
import uuid
from pathlib import Path

import pytest

from kms.crypto import usage
from kms.crypto.keygen import generate_material
from kms.crypto.usage import (
    HEADER_LENGTH,
    INVALID_CIPHERTEXT_MESSAGE,
    CiphertextHeader,
    EncryptionAlgorithm,
    LoadedKey,
    MessageType,
    SigningAlgorithm,
)
from kms.errors import InvalidCiphertext, InvalidKeyMaterial, UnsupportedOperation, ValidationError
from kms.specs import KeySpec, KeyUsage

RSA_SPECS = [KeySpec.RSA_2048, KeySpec.RSA_3072, KeySpec.RSA_4096]
EC_SPECS = [KeySpec.EC_P256, KeySpec.EC_P384, KeySpec.EC_P521]
ASYMMETRIC_SPECS = RSA_SPECS + EC_SPECS
RSA_ALGS = [a for a in SigningAlgorithm if a.value.startswith("RSASSA_")]
EC_ALG = {
    KeySpec.EC_P256: SigningAlgorithm.ECDSA_SHA_256,
    KeySpec.EC_P384: SigningAlgorithm.ECDSA_SHA_384,
    KeySpec.EC_P521: SigningAlgorithm.ECDSA_SHA_512,
}
SIGN_CASES = [(spec, alg) for spec in RSA_SPECS for alg in RSA_ALGS] + [(s, a) for s, a in EC_ALG.items()]
KEY_ID = "2f1c7f0e-8a4b-4c43-9d2e-5b8f4a1e9c10"
OTHER_KEY_ID = "9b0e6d3a-1c2f-4e5d-8a7b-6c5d4e3f2a1b"
MESSAGE = b"the quick brown fox jumps over the lazy dog\n"
OAEP_OPTS = ["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256"]
OAEP_OPTS += ["-pkeyopt", "rsa_mgf1_md:sha256"]
PSS_OPTS = ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"]

openssl = pytest.mark.openssl
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not found")


def _hash(alg: SigningAlgorithm) -> str:
    return "sha" + alg.value.rsplit("_", 1)[1]


def _digest(alg: SigningAlgorithm, data: bytes) -> bytes:
    return hashlib.new(_hash(alg), data).digest()


@pytest.fixture(scope="module")
def materials() -> dict[KeySpec, bytes]:
    """One key per spec for the whole module (RSA_4096 generation is slow)."""
    return {spec: generate_material(spec) for spec in KeySpec}


@pytest.fixture(scope="module")
def other_materials() -> dict[KeySpec, bytes]:
    return {spec: generate_material(spec) for spec in (KeySpec.AES_256, KeySpec.RSA_2048, KeySpec.EC_P256)}


@pytest.fixture(scope="module")
def aes(materials: dict[KeySpec, bytes]) -> LoadedKey:
    return usage.load_key(
        KeySpec.AES_256,
        KeyUsage.ENCRYPT_DECRYPT,
        materials[KeySpec.AES_256],
        key_id=KEY_ID,
        material_version=3,
    )


@pytest.fixture(scope="module")
def rsa_keys(materials: dict[KeySpec, bytes]) -> dict[tuple[KeySpec, KeyUsage], LoadedKey]:
    return {
        (spec, use): usage.load_key(spec, use, materials[spec], key_id=KEY_ID, material_version=7)
        for spec in RSA_SPECS
        for use in KeyUsage
    }


@pytest.fixture(scope="module")
def signers(
    materials: dict[KeySpec, bytes], rsa_keys: dict[tuple[KeySpec, KeyUsage], LoadedKey]
) -> dict[KeySpec, LoadedKey]:
    keys = {spec: rsa_keys[(spec, KeyUsage.SIGN_VERIFY)] for spec in RSA_SPECS}
    for spec in EC_SPECS:
        keys[spec] = usage.load_key(
            spec, KeyUsage.SIGN_VERIFY, materials[spec], key_id=KEY_ID, material_version=1
        )
    return keys


@pytest.fixture(scope="module")
def pem_dir(tmp_path_factory: pytest.TempPathFactory, materials: dict[KeySpec, bytes]) -> Path:
    """priv-<spec>.pem / pub-<spec>.pem for every asymmetric spec, made by openssl from our DER."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not found")
    d = tmp_path_factory.mktemp("pem")
    for spec in ASYMMETRIC_SPECS:
        (d / f"priv-{spec}.der").write_bytes(materials[spec])
        _openssl("pkey", "-inform", "DER", "-in", d / f"priv-{spec}.der", "-out", d / f"priv-{spec}.pem")
        (d / f"pub-{spec}.pem").write_text(usage.public_key_pem(spec, materials[spec]))
    return d


def _openssl(*args: object, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"openssl {args} failed: {result.stderr.decode(errors='replace')}")
    return result


def _flip(blob: bytes, index: int, mask: int = 0x01) -> bytes:
    return blob[:index] + bytes([blob[index] ^ mask]) + blob[index + 1 :]


def _header(key_id: str, version: int, alg_byte: int, format_version: int = 1) -> bytes:
    return bytes([format_version]) + uuid.UUID(key_id).bytes + struct.pack(">I", version) + bytes([alg_byte])


# ---------------------------------------------------------------------------- AES-256-GCM


@pytest.mark.parametrize("size", [1, 2, 16, 100, 4096])
def test_aes_round_trip(aes: LoadedKey, size: int) -> None:
    plaintext = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    blob = aes.encrypt(plaintext)
    assert aes.decrypt(blob) == plaintext
    assert len(blob) == HEADER_LENGTH + 12 + size + 16


def test_aes_round_trip_with_aad(aes: LoadedKey) -> None:
    blob = aes.encrypt(b"secret", b"context=1")
    assert aes.decrypt(blob, b"context=1") == b"secret"


def test_module_level_encrypt_decrypt(materials: dict[KeySpec, bytes]) -> None:
    spec, use, m = KeySpec.AES_256, KeyUsage.ENCRYPT_DECRYPT, materials[KeySpec.AES_256]
    blob = usage.encrypt(spec, use, m, key_id=KEY_ID, material_version=1, plaintext=b"hi", aad=b"a")
    back = usage.decrypt(spec, use, m, key_id=KEY_ID, material_version=1, ciphertext=blob, aad=b"a")
    assert back == b"hi"


def test_aes_ciphertext_is_randomised(aes: LoadedKey) -> None:
    a, b = aes.encrypt(b"same"), aes.encrypt(b"same")
    assert a != b
    assert a[:HEADER_LENGTH] == b[:HEADER_LENGTH]


def test_header_describes_the_key(aes: LoadedKey) -> None:
    blob = aes.encrypt(b"x")
    assert blob[:HEADER_LENGTH] == _header(KEY_ID, 3, 1)
    header = usage.parse_ciphertext_header(blob)
    assert header == CiphertextHeader(KEY_ID, 3, EncryptionAlgorithm.SYMMETRIC_DEFAULT)
    assert isinstance(header.key_id, str)


def test_key_id_is_normalised(materials: dict[KeySpec, bytes]) -> None:
    key = usage.load_key(
        KeySpec.AES_256,
        KeyUsage.ENCRYPT_DECRYPT,
        materials[KeySpec.AES_256],
        key_id=KEY_ID.upper().replace("-", ""),
        material_version=0,
    )
    assert key.key_id == KEY_ID
    assert usage.parse_ciphertext_header(key.encrypt(b"x")).key_id == KEY_ID


def test_material_version_full_uint32_range(materials: dict[KeySpec, bytes]) -> None:
    key = usage.load_key(
        KeySpec.AES_256,
        KeyUsage.ENCRYPT_DECRYPT,
        materials[KeySpec.AES_256],
        key_id=KEY_ID,
        material_version=0xFFFFFFFF,
    )
    blob = key.encrypt(b"x")
    assert usage.parse_ciphertext_header(blob).material_version == 0xFFFFFFFF
    assert key.decrypt(blob) == b"x"


@pytest.mark.parametrize("size", [0, 4097])
def test_plaintext_size_limits(aes: LoadedKey, size: int) -> None:
    with pytest.raises(ValidationError, match="4096"):
        aes.encrypt(b"x" * size)


def test_aad_size_limit(aes: LoadedKey) -> None:
    with pytest.raises(ValidationError, match="8192"):
        aes.encrypt(b"x", b"a" * 8193)
    assert aes.decrypt(aes.encrypt(b"x", b"a" * 8192), b"a" * 8192) == b"x"


def test_non_bytes_plaintext_refused(aes: LoadedKey) -> None:
    with pytest.raises(ValidationError):
        aes.encrypt("text")  # type: ignore[arg-type]


# The short AES ciphertext (1-byte plaintext) and its byte classes.
_CLASSES = {
    "version": range(0, 1),
    "key_id": range(1, 17),
    "material_version": range(17, 21),
    "algorithm": range(21, 22),
    "nonce": range(22, 34),
    "body": range(34, 35),
    "tag": range(35, 51),
}


@pytest.mark.parametrize("part", list(_CLASSES))
def test_aes_tampering_every_byte(aes: LoadedKey, part: str) -> None:
    blob = aes.encrypt(b"k", b"aad")
    assert len(blob) == 51
    for index in _CLASSES[part]:
        for mask in (0x01, 0x80, 0xFF):
            with pytest.raises(InvalidCiphertext) as info:
                aes.decrypt(_flip(blob, index, mask), b"aad")
            assert info.value.message == INVALID_CIPHERTEXT_MESSAGE
    assert aes.decrypt(blob, b"aad") == b"k"


@pytest.mark.parametrize("field", ["key_id", "material_version"])
def test_header_is_bound_by_gcm_not_only_compared(materials: dict[KeySpec, bytes], field: str) -> None:
    """A rewritten header fails even under a key whose id/version match the new header."""
    m = materials[KeySpec.AES_256]
    original = usage.load_key(KeySpec.AES_256, KeyUsage.ENCRYPT_DECRYPT, m, key_id=KEY_ID, material_version=5)
    blob = original.encrypt(b"payload")
    if field == "key_id":
        forged = blob[:1] + uuid.UUID(OTHER_KEY_ID).bytes + blob[17:]
        same_material = usage.load_key(
            KeySpec.AES_256, KeyUsage.ENCRYPT_DECRYPT, m, key_id=OTHER_KEY_ID, material_version=5
        )
    else:
        forged = blob[:17] + struct.pack(">I", 6) + blob[21:]
        same_material = usage.load_key(
            KeySpec.AES_256, KeyUsage.ENCRYPT_DECRYPT, m, key_id=KEY_ID, material_version=6
        )
    assert usage.parse_ciphertext_header(forged) != usage.parse_ciphertext_header(blob)
    with pytest.raises(InvalidCiphertext, match="could not be decrypted"):
        same_material.decrypt(forged)


@pytest.mark.parametrize("aad", [b"", b"ctx", b"ctx\x00", b"CTX"])
def test_wrong_aad(aes: LoadedKey, aad: bytes) -> None:
    blob = aes.encrypt(b"secret", b"ctx-other")
    with pytest.raises(InvalidCiphertext) as info:
        aes.decrypt(blob, aad)
    assert info.value.message == INVALID_CIPHERTEXT_MESSAGE


def test_aad_given_but_none_used(aes: LoadedKey) -> None:
    with pytest.raises(InvalidCiphertext):
        aes.decrypt(aes.encrypt(b"secret"), b"x")


# Made outside this module, straight from the documented format (AES-256-GCM, key bytes 0..31,
# nonce bytes 0..11, associated data = header ‖ uint32be(len(aad)) ‖ aad): pins the format.
KNOWN_ANSWER = bytes.fromhex(
    "01" + "2f1c7f0e8a4b4c439d2e5b8f4a1e9c10" + "00000001" + "01" + "000102030405060708090a0b"
    "2c6cb96cabc5a375fe36f2f9e08965fe934abdb0af8eee099f4276b5"
)


def test_aes_known_answer() -> None:
    key = usage.load_key(
        KeySpec.AES_256, KeyUsage.ENCRYPT_DECRYPT, bytes(range(32)), key_id=KEY_ID, material_version=1
    )
    assert key.decrypt(KNOWN_ANSWER, b"aad") == b"known answer"
    for wrong in (b"", b"aa", b"aad\x00", b"\x00\x00\x00\x03aad"):
        with pytest.raises(InvalidCiphertext):
            key.decrypt(KNOWN_ANSWER, wrong)


def test_another_keys_ciphertext(
    aes: LoadedKey, materials: dict[KeySpec, bytes], other_materials: dict[KeySpec, bytes]
) -> None:
    other_same_id = usage.load_key(
        KeySpec.AES_256,
        KeyUsage.ENCRYPT_DECRYPT,
        other_materials[KeySpec.AES_256],
        key_id=KEY_ID,
        material_version=3,
    )
    other_id = usage.load_key(
        KeySpec.AES_256,
        KeyUsage.ENCRYPT_DECRYPT,
        materials[KeySpec.AES_256],
        key_id=OTHER_KEY_ID,
        material_version=3,
    )
    other_version = usage.load_key(
        KeySpec.AES_256,
        KeyUsage.ENCRYPT_DECRYPT,
        materials[KeySpec.AES_256],
        key_id=KEY_ID,
        material_version=4,
    )
    blob = aes.encrypt(b"secret")
    for key in (other_same_id, other_id, other_version):
        with pytest.raises(InvalidCiphertext) as info:
            key.decrypt(blob)
        assert info.value.message == INVALID_CIPHERTEXT_MESSAGE
    with pytest.raises(InvalidCiphertext):
        aes.decrypt(other_same_id.encrypt(b"secret"))


def test_truncated_and_extended(aes: LoadedKey) -> None:
    blob = aes.encrypt(b"secret", b"a")
    for length in range(len(blob)):
        with pytest.raises(InvalidCiphertext) as info:
            aes.decrypt(blob[:length], b"a")
        assert info.value.message == INVALID_CIPHERTEXT_MESSAGE
    for extra in (b"\x00", b"x" * 16):
        with pytest.raises(InvalidCiphertext):
            aes.decrypt(blob + extra, b"a")


def test_garbage_ciphertexts(aes: LoadedKey) -> None:
    for blob in (b"", b"\x01", b"\x00" * 100, b"\xff" * 51, b"not a ciphertext at all, just words"):
        with pytest.raises(InvalidCiphertext):
            aes.decrypt(blob)
        if len(blob) <= HEADER_LENGTH or blob[0] != 1:
            with pytest.raises(InvalidCiphertext):
                usage.parse_ciphertext_header(blob)


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        _header(KEY_ID, 1, 1),  # header only, no body
        _header(KEY_ID, 1, 1, format_version=2) + b"x" * 40,
        _header(KEY_ID, 1, 1, format_version=0) + b"x" * 40,
        _header(KEY_ID, 1, 0) + b"x" * 40,
        _header(KEY_ID, 1, 3) + b"x" * 40,
        _header(KEY_ID, 1, 255) + b"x" * 40,
    ],
)
def test_parse_header_rejects_malformed(blob: bytes) -> None:
    with pytest.raises(InvalidCiphertext) as info:
        usage.parse_ciphertext_header(blob)
    assert info.value.message == INVALID_CIPHERTEXT_MESSAGE


def test_parse_header_rejects_non_bytes() -> None:
    with pytest.raises(InvalidCiphertext):
        usage.parse_ciphertext_header("abc")  # type: ignore[arg-type]


def test_rsa_ciphertext_refused_by_aes_key(aes: LoadedKey, rsa_keys: dict) -> None:
    blob = rsa_keys[(KeySpec.RSA_2048, KeyUsage.ENCRYPT_DECRYPT)].encrypt(b"x")
    forged = blob[:17] + struct.pack(">I", 3) + blob[21:]  # the AES key's version
    with pytest.raises(InvalidCiphertext):
        aes.decrypt(forged)


# ---------------------------------------------------------------------------- data keys


@pytest.mark.parametrize("n", [1, 16, 32, 64, 1024])
def test_generate_data_key(aes: LoadedKey, n: int) -> None:
    plaintext, blob = aes.generate_data_key(n)
    assert len(plaintext) == n
    assert aes.decrypt(blob) == plaintext


def test_generate_data_key_default_and_module_level(materials: dict[KeySpec, bytes]) -> None:
    spec, use, m = KeySpec.AES_256, KeyUsage.ENCRYPT_DECRYPT, materials[KeySpec.AES_256]
    plaintext, blob = usage.generate_data_key(spec, use, m, key_id=KEY_ID, material_version=2)
    assert len(plaintext) == 32
    assert usage.decrypt(spec, use, m, key_id=KEY_ID, material_version=2, ciphertext=blob) == plaintext
    again, _ = usage.generate_data_key(spec, use, m, key_id=KEY_ID, material_version=2)
    assert again != plaintext


def test_generate_data_key_with_aad(aes: LoadedKey) -> None:
    plaintext, blob = aes.generate_data_key(32, b"bucket=a")
    assert aes.decrypt(blob, b"bucket=a") == plaintext
    with pytest.raises(InvalidCiphertext):
        aes.decrypt(blob)


@pytest.mark.parametrize("n", [0, -1, 1025, True, 32.0, "32"])
def test_generate_data_key_bad_size(aes: LoadedKey, n: object) -> None:
    with pytest.raises(ValidationError, match="1 to 1024"):
        aes.generate_data_key(n)  # type: ignore[arg-type]


def test_generate_data_key_needs_aes(rsa_keys: dict) -> None:
    with pytest.raises(UnsupportedOperation, match="only AES_256"):
        rsa_keys[(KeySpec.RSA_2048, KeyUsage.ENCRYPT_DECRYPT)].generate_data_key()


# ---------------------------------------------------------------------------- RSA-OAEP


@pytest.mark.parametrize("spec", RSA_SPECS)
def test_rsa_round_trip_and_limit(rsa_keys: dict, spec: KeySpec) -> None:
    key = rsa_keys[(spec, KeyUsage.ENCRYPT_DECRYPT)]
    k = spec.rsa_bits // 8
    limit = k - 66
    assert usage.rsa_max_plaintext_bytes(spec) == limit
    for size in (1, 32, limit):
        plaintext = bytes([size % 251]) * size
        blob = key.encrypt(plaintext)
        assert len(blob) == HEADER_LENGTH + k
        assert blob[:HEADER_LENGTH] == _header(KEY_ID, 7, 2)
        assert usage.parse_ciphertext_header(blob) == CiphertextHeader(
            KEY_ID, 7, EncryptionAlgorithm.RSAES_OAEP_SHA_256
        )
        assert key.decrypt(blob) == plaintext
    with pytest.raises(ValidationError, match=f"at most {limit} bytes"):
        key.encrypt(b"x" * (limit + 1))


def test_rsa_limits_are_known() -> None:
    assert [usage.rsa_max_plaintext_bytes(s) for s in RSA_SPECS] == [190, 318, 446]


def test_rsa_refuses_aad(rsa_keys: dict) -> None:
    key = rsa_keys[(KeySpec.RSA_2048, KeyUsage.ENCRYPT_DECRYPT)]
    with pytest.raises(UnsupportedOperation, match="aad is not supported"):
        key.encrypt(b"x", b"ctx")
    with pytest.raises(UnsupportedOperation, match="aad is not supported"):
        key.decrypt(key.encrypt(b"x"), b"ctx")


def test_rsa_tampering(rsa_keys: dict) -> None:
    key = rsa_keys[(KeySpec.RSA_2048, KeyUsage.ENCRYPT_DECRYPT)]
    blob = key.encrypt(b"secret")
    positions = [*range(HEADER_LENGTH), HEADER_LENGTH, HEADER_LENGTH + 100, len(blob) - 1]
    for index in positions:
        with pytest.raises(InvalidCiphertext) as info:
            key.decrypt(_flip(blob, index))
        assert info.value.message == INVALID_CIPHERTEXT_MESSAGE
    for bad in (blob[:-1], blob + b"\x00", blob[: HEADER_LENGTH + 1], blob[:HEADER_LENGTH]):
        with pytest.raises(InvalidCiphertext):
            key.decrypt(bad)


def test_rsa_another_keys_ciphertext(rsa_keys: dict, other_materials: dict[KeySpec, bytes]) -> None:
    other = usage.load_key(
        KeySpec.RSA_2048,
        KeyUsage.ENCRYPT_DECRYPT,
        other_materials[KeySpec.RSA_2048],
        key_id=KEY_ID,
        material_version=7,
    )
    with pytest.raises(InvalidCiphertext) as info:
        rsa_keys[(KeySpec.RSA_2048, KeyUsage.ENCRYPT_DECRYPT)].decrypt(other.encrypt(b"secret"))
    assert info.value.message == INVALID_CIPHERTEXT_MESSAGE


def test_rsa_ciphertext_of_another_size(rsa_keys: dict) -> None:
    blob = rsa_keys[(KeySpec.RSA_3072, KeyUsage.ENCRYPT_DECRYPT)].encrypt(b"secret")
    with pytest.raises(InvalidCiphertext):
        rsa_keys[(KeySpec.RSA_2048, KeyUsage.ENCRYPT_DECRYPT)].decrypt(blob)


@openssl
@needs_openssl
@pytest.mark.parametrize("spec", RSA_SPECS)
def test_openssl_decrypts_rsa_body(rsa_keys: dict, pem_dir: Path, spec: KeySpec, tmp_path: Path) -> None:
    plaintext = b"data key \x00\x01\xff" * 4
    blob = rsa_keys[(spec, KeyUsage.ENCRYPT_DECRYPT)].encrypt(plaintext)
    (tmp_path / "body.bin").write_bytes(blob[HEADER_LENGTH:])
    out = _openssl(
        "pkeyutl",
        "-decrypt",
        "-inkey",
        pem_dir / f"priv-{spec}.pem",
        "-in",
        tmp_path / "body.bin",
        *OAEP_OPTS,
    )
    assert out.stdout == plaintext


@openssl
@needs_openssl
@pytest.mark.parametrize("spec", RSA_SPECS)
def test_openssl_encrypted_body_decrypts(
    rsa_keys: dict, pem_dir: Path, spec: KeySpec, tmp_path: Path
) -> None:
    """The documented format: header ‖ plain OAEP-SHA-256 made by openssl decrypts here."""
    plaintext = b"made by openssl"
    (tmp_path / "pt.bin").write_bytes(plaintext)
    out = _openssl(
        "pkeyutl",
        "-encrypt",
        "-pubin",
        "-inkey",
        pem_dir / f"pub-{spec}.pem",
        "-in",
        tmp_path / "pt.bin",
        *OAEP_OPTS,
    )
    blob = _header(KEY_ID, 7, 2) + out.stdout
    assert rsa_keys[(spec, KeyUsage.ENCRYPT_DECRYPT)].decrypt(blob) == plaintext


# ---------------------------------------------------------------------------- signatures


@pytest.mark.parametrize(("spec", "alg"), SIGN_CASES)
def test_sign_verify_round_trip(signers: dict, spec: KeySpec, alg: SigningAlgorithm) -> None:
    key = signers[spec]
    sig = key.sign(message=MESSAGE, algorithm=alg)
    assert key.verify(message=MESSAGE, algorithm=alg, signature=sig)
    assert not key.verify(message=MESSAGE + b"!", algorithm=alg, signature=sig)
    assert not key.verify(message=MESSAGE, algorithm=alg, signature=_flip(sig, len(sig) // 2))
    assert not key.verify(message=MESSAGE, algorithm=alg, signature=_flip(sig, len(sig) - 1, 0x80))
    for garbage in (b"", b"\x00", b"\x30\x06\x02\x01\x01\x02\x01\x01", sig[:-1], sig + b"\x00", b"x" * 2000):
        assert key.verify(message=MESSAGE, algorithm=alg, signature=garbage) is False


@pytest.mark.parametrize(("spec", "alg"), SIGN_CASES)
def test_digest_and_raw_are_equivalent(signers: dict, spec: KeySpec, alg: SigningAlgorithm) -> None:
    key = signers[spec]
    digest = _digest(alg, MESSAGE)
    from_digest = key.sign(message=digest, message_type=MessageType.DIGEST, algorithm=alg)
    from_raw = key.sign(message=MESSAGE, message_type=MessageType.RAW, algorithm=alg)
    assert key.verify(message=MESSAGE, message_type="RAW", algorithm=alg, signature=from_digest)
    assert key.verify(message=digest, message_type="DIGEST", algorithm=alg, signature=from_raw)
    assert not key.verify(message=digest, message_type="RAW", algorithm=alg, signature=from_raw)
    if "PKCS1" in alg.value:  # deterministic: the very same bytes
        assert from_digest == from_raw


def test_pss_salt_is_random_and_ecdsa_is_der(signers: dict) -> None:
    rsa = signers[KeySpec.RSA_2048]
    a = rsa.sign(message=MESSAGE, algorithm="RSASSA_PSS_SHA_256")
    b = rsa.sign(message=MESSAGE, algorithm="RSASSA_PSS_SHA_256")
    assert a != b and len(a) == len(b) == 256
    sig = signers[KeySpec.EC_P256].sign(message=MESSAGE, algorithm="ECDSA_SHA_256")
    assert sig[0] == 0x30 and sig[1] == len(sig) - 2  # DER SEQUENCE


def test_signature_of_another_algorithm_is_invalid(signers: dict) -> None:
    key = signers[KeySpec.RSA_2048]
    pss = key.sign(message=MESSAGE, algorithm=SigningAlgorithm.RSASSA_PSS_SHA_256)
    assert not key.verify(
        message=MESSAGE, algorithm=SigningAlgorithm.RSASSA_PKCS1_V1_5_SHA_256, signature=pss
    )
    assert not key.verify(message=MESSAGE, algorithm=SigningAlgorithm.RSASSA_PSS_SHA_384, signature=pss)


def test_signature_of_another_key_is_invalid(signers: dict, other_materials: dict[KeySpec, bytes]) -> None:
    sig = usage.sign(
        KeySpec.EC_P256,
        KeyUsage.SIGN_VERIFY,
        other_materials[KeySpec.EC_P256],
        message=MESSAGE,
        algorithm=SigningAlgorithm.ECDSA_SHA_256,
    )
    assert not signers[KeySpec.EC_P256].verify(message=MESSAGE, algorithm="ECDSA_SHA_256", signature=sig)


def test_module_level_sign_verify(materials: dict[KeySpec, bytes]) -> None:
    m = materials[KeySpec.EC_P384]
    sig = usage.sign(KeySpec.EC_P384, KeyUsage.SIGN_VERIFY, m, message=b"m", algorithm="ecdsa_sha_384")
    assert usage.verify(
        KeySpec.EC_P384, KeyUsage.SIGN_VERIFY, m, message=b"m", algorithm="ECDSA_SHA_384", signature=sig
    )
    assert not usage.verify(
        KeySpec.EC_P384, KeyUsage.SIGN_VERIFY, m, message=b"n", algorithm="ECDSA_SHA_384", signature=sig
    )


@pytest.mark.parametrize(("spec", "alg"), [(KeySpec.RSA_2048, a) for a in RSA_ALGS] + list(EC_ALG.items()))
def test_digest_must_have_the_hash_length(signers: dict, spec: KeySpec, alg: SigningAlgorithm) -> None:
    key = signers[spec]
    n = alg.digest_bytes
    for bad in (b"", b"x" * (n - 1), b"x" * (n + 1), b"x" * 32 if n != 32 else b"x" * 64):
        with pytest.raises(ValidationError, match=f"exactly {n} bytes"):
            key.sign(message=bad, message_type="DIGEST", algorithm=alg)
        with pytest.raises(ValidationError):
            key.verify(message=bad, message_type="DIGEST", algorithm=alg, signature=b"x")


def test_raw_message_limits(signers: dict) -> None:
    key = signers[KeySpec.EC_P256]
    assert key.sign(message=b"x" * 4096, algorithm="ECDSA_SHA_256")
    for bad in (b"", b"x" * 4097):
        with pytest.raises(ValidationError, match="4096"):
            key.sign(message=bad, algorithm="ECDSA_SHA_256")
        with pytest.raises(ValidationError, match="4096"):
            key.verify(message=bad, algorithm="ECDSA_SHA_256", signature=b"x")


@pytest.mark.parametrize(
    ("spec", "alg", "allowed"),
    [
        (KeySpec.EC_P256, SigningAlgorithm.ECDSA_SHA_384, "ECDSA_SHA_256"),
        (KeySpec.EC_P384, SigningAlgorithm.ECDSA_SHA_256, "ECDSA_SHA_384"),
        (KeySpec.EC_P521, SigningAlgorithm.RSASSA_PSS_SHA_512, "ECDSA_SHA_512"),
        (KeySpec.RSA_2048, SigningAlgorithm.ECDSA_SHA_256, "RSASSA_PSS_SHA_256, RSASSA_PSS_SHA_384"),
    ],
)
def test_algorithm_not_for_this_spec(
    signers: dict, spec: KeySpec, alg: SigningAlgorithm, allowed: str
) -> None:
    with pytest.raises(UnsupportedOperation, match=allowed) as info:
        signers[spec].sign(message=MESSAGE, algorithm=alg)
    assert "RSASSA_PKCS1_V1_5_SHA_512" in info.value.message or spec.is_ec
    with pytest.raises(UnsupportedOperation, match=allowed):
        signers[spec].verify(message=MESSAGE, algorithm=alg, signature=b"x")


# ---------------------------------------------------------------------------- openssl known answers


@openssl
@needs_openssl
@pytest.mark.parametrize(("spec", "alg"), SIGN_CASES)
@pytest.mark.parametrize("message_type", ["RAW", "DIGEST"])
def test_openssl_verifies_our_signature(
    signers: dict, pem_dir: Path, tmp_path: Path, spec: KeySpec, alg: SigningAlgorithm, message_type: str
) -> None:
    message = MESSAGE if message_type == "RAW" else _digest(alg, MESSAGE)
    sig = signers[spec].sign(message=message, message_type=message_type, algorithm=alg)
    (tmp_path / "msg.bin").write_bytes(MESSAGE)
    (tmp_path / "sig.bin").write_bytes(sig)
    opts = (
        ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"] if "PSS" in alg.value else []
    )
    out = _openssl(
        "dgst",
        f"-{_hash(alg)}",
        "-verify",
        pem_dir / f"pub-{spec}.pem",
        *opts,
        "-signature",
        tmp_path / "sig.bin",
        tmp_path / "msg.bin",
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert b"Verified OK" in out.stdout
    # and a wrong message does not verify
    (tmp_path / "msg.bin").write_bytes(MESSAGE + b"!")
    bad = _openssl(
        "dgst",
        f"-{_hash(alg)}",
        "-verify",
        pem_dir / f"pub-{spec}.pem",
        *opts,
        "-signature",
        tmp_path / "sig.bin",
        tmp_path / "msg.bin",
        check=False,
    )
    assert bad.returncode != 0


@openssl
@needs_openssl
@pytest.mark.parametrize(("spec", "alg"), SIGN_CASES)
def test_we_verify_openssl_signature(
    signers: dict, pem_dir: Path, tmp_path: Path, spec: KeySpec, alg: SigningAlgorithm
) -> None:
    (tmp_path / "msg.bin").write_bytes(MESSAGE)
    opts = (
        ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"] if "PSS" in alg.value else []
    )
    _openssl(
        "dgst",
        f"-{_hash(alg)}",
        "-sign",
        pem_dir / f"priv-{spec}.pem",
        *opts,
        "-out",
        tmp_path / "sig.bin",
        tmp_path / "msg.bin",
    )
    sig = (tmp_path / "sig.bin").read_bytes()
    key = signers[spec]
    assert key.verify(message=MESSAGE, algorithm=alg, signature=sig)
    assert key.verify(message=_digest(alg, MESSAGE), message_type="DIGEST", algorithm=alg, signature=sig)
    assert not key.verify(message=MESSAGE + b"!", algorithm=alg, signature=sig)
    if "PKCS1" in alg.value:
        assert sig == key.sign(message=MESSAGE, algorithm=alg)


@openssl
@needs_openssl
def test_pss_with_another_salt_length_is_refused(signers: dict, pem_dir: Path, tmp_path: Path) -> None:
    """PSS is verified with salt length = digest length, as it is signed (and as AWS KMS does)."""
    (tmp_path / "msg.bin").write_bytes(MESSAGE)
    spec = KeySpec.RSA_2048
    _openssl(
        "dgst",
        "-sha256",
        "-sign",
        pem_dir / f"priv-{spec}.pem",
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:max",
        "-out",
        tmp_path / "sig.bin",
        tmp_path / "msg.bin",
    )
    sig = (tmp_path / "sig.bin").read_bytes()
    assert not signers[spec].verify(message=MESSAGE, algorithm="RSASSA_PSS_SHA_256", signature=sig)


@openssl
@needs_openssl
@pytest.mark.parametrize("spec", ASYMMETRIC_SPECS)
def test_public_key_pem_matches_openssl(
    materials: dict[KeySpec, bytes], pem_dir: Path, spec: KeySpec
) -> None:
    ours = usage.public_key_pem(spec, materials[spec])
    theirs = _openssl("pkey", "-in", pem_dir / f"priv-{spec}.pem", "-pubout").stdout.decode()
    assert ours == theirs
    text = _openssl("pkey", "-pubin", "-in", pem_dir / f"pub-{spec}.pem", "-noout", "-text").stdout.decode()
    bits = spec.rsa_bits if spec.is_rsa else int(spec.value[4:])
    assert f"{bits} bit" in text


# ---------------------------------------------------------------------------- public key


@pytest.mark.parametrize("spec", ASYMMETRIC_SPECS)
def test_public_key_pem(materials: dict[KeySpec, bytes], signers: dict, spec: KeySpec) -> None:
    pem = usage.public_key_pem(spec, materials[spec])
    assert pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert pem.endswith("-----END PUBLIC KEY-----\n")
    assert "PRIVATE" not in pem
    assert signers[spec].public_key_pem() == pem


def test_public_key_pem_of_encrypt_key(rsa_keys: dict, materials: dict[KeySpec, bytes]) -> None:
    key = rsa_keys[(KeySpec.RSA_2048, KeyUsage.ENCRYPT_DECRYPT)]
    assert key.public_key_pem() == usage.public_key_pem(KeySpec.RSA_2048, materials[KeySpec.RSA_2048])


def test_public_key_pem_refused_for_aes(aes: LoadedKey, materials: dict[KeySpec, bytes]) -> None:
    with pytest.raises(UnsupportedOperation, match="no public key"):
        usage.public_key_pem(KeySpec.AES_256, materials[KeySpec.AES_256])
    with pytest.raises(UnsupportedOperation, match="no public key"):
        aes.public_key_pem()


# ---------------------------------------------------------------------------- wrong usage


def test_encrypt_with_sign_key(rsa_keys: dict, signers: dict) -> None:
    for key in (rsa_keys[(KeySpec.RSA_2048, KeyUsage.SIGN_VERIFY)], signers[KeySpec.EC_P256]):
        for call in (
            lambda k: k.encrypt(b"x"),
            lambda k: k.decrypt(b"\x01" + b"\x00" * 60),
            lambda k: k.generate_data_key(),
        ):
            with pytest.raises(UnsupportedOperation, match="can only sign and verify"):
                call(key)


def test_encrypt_module_level_ec(materials: dict[KeySpec, bytes]) -> None:
    with pytest.raises(UnsupportedOperation, match=r"can only sign and verify \(ECDSA_SHA_512\)"):
        usage.encrypt(
            KeySpec.EC_P521,
            KeyUsage.SIGN_VERIFY,
            materials[KeySpec.EC_P521],
            key_id=KEY_ID,
            material_version=1,
            plaintext=b"x",
        )


def test_sign_with_encrypt_keys(aes: LoadedKey, rsa_keys: dict) -> None:
    with pytest.raises(UnsupportedOperation, match="AES_256 key can only encrypt"):
        aes.sign(message=b"x", algorithm="RSASSA_PSS_SHA_256")
    with pytest.raises(UnsupportedOperation, match="can only encrypt and decrypt"):
        rsa_keys[(KeySpec.RSA_2048, KeyUsage.ENCRYPT_DECRYPT)].sign(
            message=b"x", algorithm="RSASSA_PSS_SHA_256"
        )
    with pytest.raises(UnsupportedOperation, match="can only encrypt and decrypt"):
        rsa_keys[(KeySpec.RSA_2048, KeyUsage.ENCRYPT_DECRYPT)].verify(
            message=b"x", algorithm="RSASSA_PSS_SHA_256", signature=b"x"
        )


@pytest.mark.parametrize(
    ("spec", "use"),
    [(KeySpec.AES_256, KeyUsage.SIGN_VERIFY)] + [(s, KeyUsage.ENCRYPT_DECRYPT) for s in EC_SPECS],
)
def test_usage_that_does_not_fit_the_spec(
    materials: dict[KeySpec, bytes], spec: KeySpec, use: KeyUsage
) -> None:
    with pytest.raises(UnsupportedOperation, match="does not fit"):
        usage.load_key(spec, use, materials[spec], key_id=KEY_ID, material_version=1)


# ---------------------------------------------------------------------------- algorithm lists and parsing


def test_algorithm_lists() -> None:
    assert usage.encryption_algorithms_for(KeySpec.AES_256, KeyUsage.ENCRYPT_DECRYPT) == ["SYMMETRIC_DEFAULT"]
    for spec in RSA_SPECS:
        assert usage.encryption_algorithms_for(spec, KeyUsage.ENCRYPT_DECRYPT) == ["RSAES_OAEP_SHA_256"]
        assert usage.encryption_algorithms_for(spec, KeyUsage.SIGN_VERIFY) == []
        assert usage.signing_algorithms_for(spec) == RSA_ALGS
        assert usage.signing_algorithms_for(spec, KeyUsage.SIGN_VERIFY) == RSA_ALGS
        assert usage.signing_algorithms_for(spec, KeyUsage.ENCRYPT_DECRYPT) == []
    for spec, alg in EC_ALG.items():
        assert usage.signing_algorithms_for(spec) == [alg]
        assert usage.encryption_algorithms_for(spec, KeyUsage.SIGN_VERIFY) == []
    assert usage.signing_algorithms_for(KeySpec.AES_256) == []
    assert len(RSA_ALGS) == 6


def test_loaded_key_lists(aes: LoadedKey, signers: dict) -> None:
    assert aes.encryption_algorithms == [EncryptionAlgorithm.SYMMETRIC_DEFAULT]
    assert aes.signing_algorithms == []
    assert signers[KeySpec.EC_P521].signing_algorithms == [SigningAlgorithm.ECDSA_SHA_512]


def test_parse_helpers() -> None:
    assert usage.parse_signing_algorithm(" rsassa_pss_sha_256 ") is SigningAlgorithm.RSASSA_PSS_SHA_256
    assert usage.parse_message_type(None) is MessageType.RAW
    assert usage.parse_message_type("digest") is MessageType.DIGEST
    assert usage.parse_encryption_algorithm("SYMMETRIC_DEFAULT") is EncryptionAlgorithm.SYMMETRIC_DEFAULT
    with pytest.raises(ValidationError, match="ECDSA_SHA_512") as info:
        usage.parse_signing_algorithm("ECDSA_SHA_1")
    assert "RSASSA_PKCS1_V1_5_SHA_256" in info.value.message
    with pytest.raises(ValidationError, match="RAW, DIGEST"):
        usage.parse_message_type("HASH")
    with pytest.raises(ValidationError, match="must be a string"):
        usage.parse_message_type(3)
    with pytest.raises(ValidationError, match="SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_256"):
        usage.parse_encryption_algorithm("RSAES_OAEP_SHA_1")


def test_unknown_algorithm_string_is_validation_error(signers: dict) -> None:
    with pytest.raises(ValidationError, match="signing_algorithm"):
        signers[KeySpec.EC_P256].sign(message=b"x", algorithm="ECDSA_SHA_1")
    with pytest.raises(ValidationError, match="message_type"):
        signers[KeySpec.EC_P256].sign(message=b"x", message_type="TEXT", algorithm="ECDSA_SHA_256")


def test_digest_sizes() -> None:
    assert {a: a.digest_bytes for a in SigningAlgorithm if a.value.endswith("256")} == dict.fromkeys(
        [a for a in SigningAlgorithm if a.value.endswith("256")], 32
    )
    assert SigningAlgorithm.ECDSA_SHA_384.digest_bytes == 48
    assert SigningAlgorithm.RSASSA_PSS_SHA_512.digest_bytes == 64


# ---------------------------------------------------------------------------- loading and secrecy


@pytest.mark.parametrize("spec", list(KeySpec))
def test_material_never_in_repr(materials: dict[KeySpec, bytes], spec: KeySpec) -> None:
    material = materials[spec]
    use = KeyUsage.SIGN_VERIFY if spec.is_ec else KeyUsage.ENCRYPT_DECRYPT
    key = usage.load_key(spec, use, material, key_id=KEY_ID, material_version=1)
    for text in (repr(key), str(key), f"{key}"):
        assert KEY_ID in text
        for leak in (
            material.hex(),
            material[-16:].hex(),
            base64.b64encode(material).decode(),
            repr(material),
        ):
            assert leak not in text
    assert not hasattr(key, "__dict__")
    assert all(not isinstance(getattr(key, s, None), bytes) for s in LoadedKey.__slots__)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(key)


@pytest.mark.parametrize(
    ("spec", "source"),
    [
        (KeySpec.AES_256, None),  # 31 bytes
        (KeySpec.RSA_2048, KeySpec.RSA_3072),
        (KeySpec.RSA_2048, KeySpec.EC_P256),
        (KeySpec.EC_P256, KeySpec.EC_P384),
        (KeySpec.EC_P384, KeySpec.RSA_2048),
        (KeySpec.EC_P521, KeySpec.AES_256),
    ],
)
def test_material_that_does_not_fit(
    materials: dict[KeySpec, bytes], spec: KeySpec, source: KeySpec | None
) -> None:
    material = materials[KeySpec.AES_256][:31] if source is None else materials[source]
    use = KeyUsage.SIGN_VERIFY if spec.is_ec else KeyUsage.ENCRYPT_DECRYPT
    with pytest.raises(InvalidKeyMaterial) as info:
        usage.load_key(spec, use, material, key_id=KEY_ID, material_version=1)
    assert material.hex()[:16] not in info.value.message
    assert str(spec) in info.value.message


def test_trusted_material_loads_the_same_key(materials: dict[KeySpec, bytes], rsa_keys: dict) -> None:
    fast = usage.load_key(
        KeySpec.RSA_4096,
        KeyUsage.ENCRYPT_DECRYPT,
        materials[KeySpec.RSA_4096],
        key_id=KEY_ID,
        material_version=7,
        trusted_material=True,
    )
    slow = rsa_keys[(KeySpec.RSA_4096, KeyUsage.ENCRYPT_DECRYPT)]
    assert slow.decrypt(fast.encrypt(b"x")) == b"x"
    assert fast.decrypt(slow.encrypt(b"y")) == b"y"


@pytest.mark.parametrize("key_id", ["", "not-a-uuid", "1234", None, 42])
def test_bad_key_id(materials: dict[KeySpec, bytes], key_id: object) -> None:
    with pytest.raises(ValidationError, match="key_id"):
        usage.load_key(
            KeySpec.AES_256,
            KeyUsage.ENCRYPT_DECRYPT,
            materials[KeySpec.AES_256],
            key_id=key_id,  # type: ignore[arg-type]
            material_version=1,
        )


@pytest.mark.parametrize("version", [-1, 2**32, True, "1", None])
def test_bad_material_version(materials: dict[KeySpec, bytes], version: object) -> None:
    with pytest.raises(ValidationError, match="material_version"):
        usage.load_key(
            KeySpec.AES_256,
            KeyUsage.ENCRYPT_DECRYPT,
            materials[KeySpec.AES_256],
            key_id=KEY_ID,
            material_version=version,  # type: ignore[arg-type]
        )


def test_errors_do_not_carry_plaintext(aes: LoadedKey, rsa_keys: dict) -> None:
    secret = b"S3CRET-PLAINTEXT-" * 20
    with pytest.raises(ValidationError) as info:
        rsa_keys[(KeySpec.RSA_2048, KeyUsage.ENCRYPT_DECRYPT)].encrypt(secret)
    assert "S3CRET" not in info.value.message
    with pytest.raises(ValidationError) as info:
        aes.encrypt(secret * 20)
    assert "S3CRET" not in info.value.message
