"""Wrapped-material formats of DESIGN §6.1/§6.2, driven by the real openssl command line.

The seed guide's commands are run verbatim (``GUIDE_*``) in a temporary directory with
the guide's file names; other recipes (AES-KWP, ``-iter`` left out) are spelled out
next to them. Python-only cases (client-side wrapping, parsing) need no openssl.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kms.crypto.material import unwrap_and_validate, validate_material
from kms.crypto.wrapping import (
    OPENSSL_SALTED_MAGIC,
    UNWRAP_FAILED_MESSAGE,
    WrapForm,
    WrappingAlgorithm,
    WrappingKeySpec,
    generate_wrapping_key,
    max_direct_oaep_bytes,
    openssl_pass_file_password,
    parse_wrapping_algorithm,
    parse_wrapping_key_spec,
    unwrap,
    unwrap_material,
    wrap_material,
)
from kms.errors import InvalidKeyMaterial, ValidationError
from kms.specs import KeySpec, KeyUsage, default_usage

requires_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
openssl = [pytest.mark.openssl, requires_openssl]

# --- the seed guide, verbatim ("Instructions for Creating and Wrapping Key Content") ---
GUIDE_RAND_SYMMETRIC = "openssl rand -out PlaintextKeyMaterial.bin"  # step 1 as printed (no length!)
GUIDE_WRAP_SYMMETRIC_SHA256 = (
    "openssl pkeyutl -encrypt -inkey WrappingPublicKey.pem -pubin -pkeyopt rsa_padding_mode:oaep "
    "-pkeyopt rsa_oaep_md:sha256 -in PlaintextKeyMaterial.bin -out EncryptedKeyMaterial.bin"
)
GUIDE_WRAP_SYMMETRIC_SHA1 = (
    "openssl pkeyutl -encrypt -inkey WrappingPublicKey.pem -pubin -pkeyopt rsa_padding_mode:oaep "
    "-pkeyopt rsa_oaep_md:sha1 -in PlaintextKeyMaterial.bin -out EncryptedKeyMaterial.bin"
)
GUIDE_RAND_AES = "openssl rand -out aes_key.bin 32"
GUIDE_GENPKEY_RSA_4096 = (
    "openssl genpkey -algorithm RSA -out my_private_key.pem -pkeyopt rsa_keygen_bits:4096"
)
GUIDE_WRAP_AES_SHA256 = (
    "openssl pkeyutl -encrypt -inkey WrappingPublicKey.pem -pubin -pkeyopt rsa_padding_mode:oaep "
    "-pkeyopt rsa_oaep_md:sha256 -in aes_key.bin -out aes_key_wrapped.bin"
)
GUIDE_WRAP_AES_SHA1 = (
    "openssl pkeyutl -encrypt -inkey WrappingPublicKey.pem -pubin -pkeyopt rsa_padding_mode:oaep "
    "-pkeyopt rsa_oaep_md:sha1 -in aes_key.bin -out aes_key_wrapped.bin"
)
GUIDE_ENC = (
    "openssl enc -aes-256-cbc -salt -in my_private_key.pem -out my_private_key_wrapped.bin "
    "-pass file:aes_key.bin -pbkdf2 -iter 10"
)
# --- not in the guide ---
RAND_SYMMETRIC_32 = "openssl rand -out PlaintextKeyMaterial.bin 32"  # what step 1 should say
ENC_DEFAULT_ITER = (  # -iter left out: openssl uses 10000 PBKDF2 iterations
    "openssl enc -aes-256-cbc -salt -in my_private_key.pem -out my_private_key_wrapped.bin "
    "-pass file:aes_key.bin -pbkdf2"
)
# RFC 5649 AES-KWP; OpenSSL 3.0 needs the explicit -iv (the RFC 5649 AIV prefix), else
# "iv undefined". Input is wrapped in 4096-byte chunks, which every private key fits.
ENC_KWP = (
    "openssl enc -id-aes256-wrap-pad -iv A65959A6 -K {hex} "
    "-in my_private_key.pem -out my_private_key_wrapped.bin"
)

ALGORITHMS = list(WrappingAlgorithm)
KEY_WRAP_ALGORITHMS = [WrappingAlgorithm.RSA_AES_KEY_WRAP_SHA_256, WrappingAlgorithm.RSA_AES_KEY_WRAP_SHA_1]
ASYMMETRIC_SPECS: list[KeySpec] = [s for s in KeySpec if s is not KeySpec.AES_256]
EC_CURVE = {KeySpec.EC_P256: "P-256", KeySpec.EC_P384: "P-384", KeySpec.EC_P521: "P-521"}


def sh(cwd: Path, command: str, *, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(shlex.split(command), cwd=cwd, capture_output=True, check=check, timeout=120)


def oaep_md_command(template: str, algorithm: WrappingAlgorithm) -> str:
    """The guide's pkeyutl line with ``rsa_oaep_md`` set for ``algorithm``."""
    return template.replace("rsa_oaep_md:sha256", f"rsa_oaep_md:{algorithm.oaep_hash_name}")


def assert_opaque(call: Callable[[], object]) -> InvalidKeyMaterial:
    with pytest.raises(InvalidKeyMaterial) as info:
        call()
    err = info.value
    assert type(err) is InvalidKeyMaterial
    assert err.message == UNWRAP_FAILED_MESSAGE == str(err)
    assert err.details == {}
    # nothing chained that a traceback or log line could show
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    return err


@pytest.fixture(scope="module")
def wrapping_keys() -> dict[WrappingKeySpec, tuple[bytes, str]]:
    return {spec: generate_wrapping_key(spec) for spec in WrappingKeySpec}


@pytest.fixture(scope="module")
def other_wrapping_key() -> tuple[bytes, str]:
    return generate_wrapping_key(WrappingKeySpec.RSA_2048)


@pytest.fixture(scope="module")
def private_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[KeySpec, bytes]:
    """One PEM private key per asymmetric spec, made by openssl genpkey (the guide's
    command for RSA 4096, its siblings for the others), generated in parallel."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    work = tmp_path_factory.mktemp("genpkey")
    commands = {
        KeySpec.RSA_4096: GUIDE_GENPKEY_RSA_4096.replace("my_private_key.pem", "RSA_4096.pem"),
        KeySpec.RSA_3072: "openssl genpkey -algorithm RSA -out RSA_3072.pem -pkeyopt rsa_keygen_bits:3072",
        KeySpec.RSA_2048: "openssl genpkey -algorithm RSA -out RSA_2048.pem -pkeyopt rsa_keygen_bits:2048",
    }
    for spec, curve in EC_CURVE.items():
        commands[spec] = f"openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:{curve} -out {spec}.pem"
    procs = {
        spec: subprocess.Popen(shlex.split(cmd), cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for spec, cmd in commands.items()
    }
    for proc in procs.values():
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    return {spec: (work / f"{spec}.pem").read_bytes() for spec in commands}


def write_public(cwd: Path, public_pem: str) -> None:
    (cwd / "WrappingPublicKey.pem").write_text(public_pem)


def guide_aes_key(cwd: Path) -> bytes:
    """Guide step 1 (``openssl rand -out aes_key.bin 32``), repeated while the key starts
    with 0x00: openssl's ``-pass file:`` then reads an empty C string and fails."""
    while True:
        sh(cwd, GUIDE_RAND_AES)
        key = (cwd / "aes_key.bin").read_bytes()
        assert len(key) == 32
        if key[0] != 0:
            return key


def openssl_hybrid(cwd: Path, algorithm: WrappingAlgorithm, aes_key: bytes, *, fmt: str = "guide") -> bytes:
    """Guide steps 3-5 (or the KWP / default-iteration variant of step 4) for the key in
    ``my_private_key.pem`` and ``aes_key``; returns EncryptedKeyMaterial.bin."""
    (cwd / "aes_key.bin").write_bytes(aes_key)
    sh(cwd, GUIDE_WRAP_AES_SHA256 if algorithm.oaep_hash_name == "sha256" else GUIDE_WRAP_AES_SHA1)
    if fmt == "guide":
        sh(cwd, GUIDE_ENC)
    elif fmt == "default-iter":
        sh(cwd, ENC_DEFAULT_ITER)
    elif fmt == "kwp":
        sh(cwd, ENC_KWP.format(hex=aes_key.hex()))
    else:
        raise AssertionError(fmt)
    # step 5: cat aes_key_wrapped.bin my_private_key_wrapped.bin > EncryptedKeyMaterial.bin
    blob = (cwd / "aes_key_wrapped.bin").read_bytes() + (cwd / "my_private_key_wrapped.bin").read_bytes()
    (cwd / "EncryptedKeyMaterial.bin").write_bytes(blob)
    return blob


# =============================================================================== symmetric


@pytest.mark.openssl
@requires_openssl
@pytest.mark.parametrize("wrapping_spec", list(WrappingKeySpec))
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_symmetric_guide_recipe(
    tmp_path: Path,
    wrapping_keys: dict[WrappingKeySpec, tuple[bytes, str]],
    wrapping_spec: WrappingKeySpec,
    algorithm: WrappingAlgorithm,
) -> None:
    private_der, public_pem = wrapping_keys[wrapping_spec]
    write_public(tmp_path, public_pem)
    sh(tmp_path, RAND_SYMMETRIC_32)
    command = (
        GUIDE_WRAP_SYMMETRIC_SHA256 if algorithm.oaep_hash_name == "sha256" else GUIDE_WRAP_SYMMETRIC_SHA1
    )
    sh(tmp_path, command)
    plaintext = (tmp_path / "PlaintextKeyMaterial.bin").read_bytes()
    blob = (tmp_path / "EncryptedKeyMaterial.bin").read_bytes()
    assert len(blob) == wrapping_spec.modulus_bytes

    result = unwrap(private_der, algorithm, blob)
    assert result.form is WrapForm.DIRECT_OAEP and result.authenticated
    assert result.material == plaintext
    assert unwrap_material(private_der, algorithm.value, blob) == plaintext
    assert (
        unwrap_and_validate(private_der, algorithm, blob, KeySpec.AES_256, KeyUsage.ENCRYPT_DECRYPT)
        == plaintext
    )


@pytest.mark.openssl
@requires_openssl
def test_guide_step1_without_length_writes_an_empty_file(
    tmp_path: Path, wrapping_keys: dict[WrappingKeySpec, tuple[bytes, str]]
) -> None:
    """OpenSSL 3.0: ``openssl rand -out F`` without a length exits 0 and writes 0 bytes;
    pkeyutl then happily OAEP-encrypts the empty file. The import must say 32 bytes."""
    private_der, public_pem = wrapping_keys[WrappingKeySpec.RSA_2048]
    write_public(tmp_path, public_pem)
    done = sh(tmp_path, GUIDE_RAND_SYMMETRIC, check=False)
    if done.returncode != 0:  # a newer openssl that rejects the missing length
        pytest.skip("this openssl refuses `rand` without a length")
    assert (tmp_path / "PlaintextKeyMaterial.bin").read_bytes() == b""
    sh(tmp_path, GUIDE_WRAP_SYMMETRIC_SHA256)
    blob = (tmp_path / "EncryptedKeyMaterial.bin").read_bytes()
    assert unwrap_material(private_der, WrappingAlgorithm.RSAES_OAEP_SHA_256, blob) == b""
    with pytest.raises(InvalidKeyMaterial) as info:
        unwrap_and_validate(
            private_der, WrappingAlgorithm.RSAES_OAEP_SHA_256, blob, KeySpec.AES_256, KeyUsage.ENCRYPT_DECRYPT
        )
    assert "32 bytes" in info.value.message
    assert "openssl rand -out PlaintextKeyMaterial.bin 32" in info.value.message


# =============================================================================== asymmetric


@pytest.mark.openssl
@requires_openssl
@pytest.mark.parametrize("fmt", ["guide", "kwp"])
@pytest.mark.parametrize("algorithm", KEY_WRAP_ALGORITHMS)
@pytest.mark.parametrize("spec", ASYMMETRIC_SPECS)
def test_asymmetric_openssl_recipes(
    tmp_path: Path,
    wrapping_keys: dict[WrappingKeySpec, tuple[bytes, str]],
    private_keys: dict[KeySpec, bytes],
    spec: KeySpec,
    algorithm: WrappingAlgorithm,
    fmt: str,
) -> None:
    wrapping_spec = list(WrappingKeySpec)[ASYMMETRIC_SPECS.index(spec) % 3]
    private_der, public_pem = wrapping_keys[wrapping_spec]
    write_public(tmp_path, public_pem)
    pem = private_keys[spec]
    (tmp_path / "my_private_key.pem").write_bytes(pem)
    blob = openssl_hybrid(tmp_path, algorithm, guide_aes_key(tmp_path), fmt=fmt)
    assert len(blob) > wrapping_spec.modulus_bytes

    result = unwrap(private_der, algorithm, blob)
    assert result.material == pem
    assert result.form is (WrapForm.RSA_AES_OPENSSL if fmt == "guide" else WrapForm.RSA_AES_KWP)
    assert result.authenticated is (fmt == "kwp")
    canonical = unwrap_and_validate(private_der, algorithm, blob, spec, default_usage(spec))
    assert canonical == validate_material(spec, default_usage(spec), pem)
    assert canonical.startswith(b"\x30")  # PKCS#8 DER


@pytest.mark.openssl
@requires_openssl
@pytest.mark.parametrize("spec", [KeySpec.RSA_2048, KeySpec.EC_P256, KeySpec.EC_P521])
def test_enc_without_iter_uses_10000_iterations(
    tmp_path: Path,
    wrapping_keys: dict[WrappingKeySpec, tuple[bytes, str]],
    private_keys: dict[KeySpec, bytes],
    spec: KeySpec,
) -> None:
    private_der, public_pem = wrapping_keys[WrappingKeySpec.RSA_3072]
    write_public(tmp_path, public_pem)
    (tmp_path / "my_private_key.pem").write_bytes(private_keys[spec])
    algorithm = WrappingAlgorithm.RSA_AES_KEY_WRAP_SHA_256
    blob = openssl_hybrid(tmp_path, algorithm, guide_aes_key(tmp_path), fmt="default-iter")
    assert unwrap_material(private_der, algorithm, blob) == private_keys[spec]


@pytest.mark.openssl
@requires_openssl
@pytest.mark.parametrize("fmt", ["guide", "kwp"])
def test_der_private_key_material(
    tmp_path: Path,
    wrapping_keys: dict[WrappingKeySpec, tuple[bytes, str]],
    private_keys: dict[KeySpec, bytes],
    fmt: str,
) -> None:
    """The key file may be DER (``openssl pkey -outform DER``) and PKCS#1 / SEC1."""
    private_der, public_pem = wrapping_keys[WrappingKeySpec.RSA_2048]
    write_public(tmp_path, public_pem)
    algorithm = WrappingAlgorithm.RSA_AES_KEY_WRAP_SHA_1
    for spec, conversion in [
        (KeySpec.RSA_2048, "openssl pkey -in in.pem -outform DER -out my_private_key.pem"),
        (KeySpec.RSA_3072, "openssl pkey -in in.pem -traditional -out my_private_key.pem"),
        (KeySpec.EC_P384, "openssl ec -in in.pem -outform DER -out my_private_key.pem"),
        (KeySpec.EC_P256, "openssl ec -in in.pem -out my_private_key.pem"),
    ]:
        (tmp_path / "in.pem").write_bytes(private_keys[spec])
        sh(tmp_path, conversion)
        encoded = (tmp_path / "my_private_key.pem").read_bytes()
        blob = openssl_hybrid(tmp_path, algorithm, guide_aes_key(tmp_path), fmt=fmt)
        assert unwrap_material(private_der, algorithm, blob) == encoded
        expected = validate_material(spec, default_usage(spec), private_keys[spec])
        assert unwrap_and_validate(private_der, algorithm, blob, spec, default_usage(spec)) == expected


# ----------------------------------------------------------- the password cut of -pass file:


def key_with(positions: dict[int, int]) -> bytes:
    """A random AES key free of 0x00 / 0x0A except the bytes placed at ``positions``."""
    key = bytearray(b if b not in (0, 10) else 0x41 for b in os.urandom(32))
    for at, value in positions.items():
        key[at] = value
    return bytes(key)


CUT_KEYS = {
    "0x0A-at-5": {5: 0x0A},
    "0x00-at-9": {9: 0x00},
    "0x0A-at-1": {1: 0x0A},
    "0x00-at-3-then-0x0A": {3: 0x00, 20: 0x0A},
    "0x0A-at-3-then-0x00": {3: 0x0A, 4: 0x00},
    "0x0A-last": {31: 0x0A},
    "0x00-last": {31: 0x00},
    "0x0A-first(empty password)": {0: 0x0A},
    "no-cut": {},
}


def test_openssl_pass_file_password_rule() -> None:
    assert openssl_pass_file_password(b"abc\ndef") == b"abc"
    assert openssl_pass_file_password(b"abc\x00def\nx") == b"abc"
    assert openssl_pass_file_password(b"ab\ncd\x00") == b"ab"
    assert openssl_pass_file_password(b"\nabc") == b""
    assert openssl_pass_file_password(b"ab\rcd") == b"ab\rcd"  # only \n and NUL end it
    assert openssl_pass_file_password(bytes(range(1, 10))) == bytes(range(1, 10))


@pytest.mark.openssl
@requires_openssl
@pytest.mark.parametrize("positions", list(CUT_KEYS.values()), ids=list(CUT_KEYS))
@pytest.mark.parametrize("fmt", ["guide", "default-iter"])
def test_aes_keys_that_openssl_cuts(
    tmp_path: Path,
    wrapping_keys: dict[WrappingKeySpec, tuple[bytes, str]],
    private_keys: dict[KeySpec, bytes],
    positions: dict[int, int],
    fmt: str,
) -> None:
    private_der, public_pem = wrapping_keys[WrappingKeySpec.RSA_2048]
    write_public(tmp_path, public_pem)
    (tmp_path / "my_private_key.pem").write_bytes(private_keys[KeySpec.EC_P256])
    algorithm = WrappingAlgorithm.RSA_AES_KEY_WRAP_SHA_256
    aes_key = key_with(positions)
    blob = openssl_hybrid(tmp_path, algorithm, aes_key, fmt=fmt)
    assert unwrap_material(private_der, algorithm, blob) == private_keys[KeySpec.EC_P256]


@pytest.mark.openssl
@requires_openssl
def test_aes_key_starting_with_nul_makes_openssl_itself_fail(tmp_path: Path) -> None:
    (tmp_path / "my_private_key.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\n")
    (tmp_path / "aes_key.bin").write_bytes(key_with({0: 0x00}))
    done = sh(tmp_path, GUIDE_ENC, check=False)
    assert done.returncode != 0
    assert b"password" in done.stderr.lower()


@pytest.mark.openssl
@requires_openssl
def test_random_aes_keys(
    tmp_path: Path,
    wrapping_keys: dict[WrappingKeySpec, tuple[bytes, str]],
    private_keys: dict[KeySpec, bytes],
) -> None:
    """40 random AES keys through the guide's step 4 (about 1 in 5 is cut by openssl)."""
    private_der, public_pem = wrapping_keys[WrappingKeySpec.RSA_2048]
    write_public(tmp_path, public_pem)
    (tmp_path / "my_private_key.pem").write_bytes(private_keys[KeySpec.EC_P384])
    algorithm = WrappingAlgorithm.RSA_AES_KEY_WRAP_SHA_1
    for _ in range(40):
        aes_key = os.urandom(32)
        if aes_key[0] == 0:
            continue  # openssl refuses (see the test above)
        blob = openssl_hybrid(tmp_path, algorithm, aes_key)
        assert unwrap_material(private_der, algorithm, blob) == private_keys[KeySpec.EC_P384]


# =============================================================================== failures


@pytest.fixture(scope="module")
def hybrid_blobs(
    tmp_path_factory: pytest.TempPathFactory,
    wrapping_keys: dict[WrappingKeySpec, tuple[bytes, str]],
    private_keys: dict[KeySpec, bytes],
) -> dict[str, bytes]:
    """EncryptedKeyMaterial.bin for the EC P-256 key under the 2048-bit wrapping key and
    RSA_AES_KEY_WRAP_SHA_256, made by openssl: guide format, KWP and direct OAEP."""
    cwd = tmp_path_factory.mktemp("hybrid")
    write_public(cwd, wrapping_keys[WrappingKeySpec.RSA_2048][1])
    (cwd / "my_private_key.pem").write_bytes(private_keys[KeySpec.EC_P256])
    algorithm = WrappingAlgorithm.RSA_AES_KEY_WRAP_SHA_256
    blobs = {
        "guide": openssl_hybrid(cwd, algorithm, key_with({}), fmt="guide"),
        "kwp": openssl_hybrid(cwd, algorithm, key_with({}), fmt="kwp"),
    }
    sh(cwd, RAND_SYMMETRIC_32)
    sh(cwd, GUIDE_WRAP_SYMMETRIC_SHA256)
    blobs["direct"] = (cwd / "EncryptedKeyMaterial.bin").read_bytes()
    return blobs


def flip(blob: bytes, at: int) -> bytes:
    out = bytearray(blob)
    out[at] ^= 0x01
    return bytes(out)


K = 256  # RSA_2048 modulus bytes


@pytest.mark.openssl
@requires_openssl
@pytest.mark.parametrize(
    ("fmt", "at"),
    [
        ("guide", 0),  # RSA block
        ("guide", K // 2),
        ("guide", K - 1),
        ("guide", K),  # "Salted__" magic
        ("guide", K + 7),
        ("guide", K + 8),  # salt
        ("guide", K + 15),
        ("guide", K + 16),  # first CBC block (garbles nothing the padding sees)
        ("guide", K + 16 + 48),  # a middle CBC block
        ("guide", -17),  # next-to-last CBC block (flips the padding)
        ("guide", -1),  # last CBC block
        ("kwp", 0),
        ("kwp", K - 1),
        ("kwp", K),  # RFC 5649 AIV block
        ("kwp", K + 40),
        ("kwp", -1),
        ("direct", 0),
        ("direct", K // 2),
        ("direct", K - 1),
    ],
)
def test_tampered_blob_is_one_opaque_error(
    wrapping_keys: dict[WrappingKeySpec, tuple[bytes, str]], hybrid_blobs: dict[str, bytes], fmt: str, at: int
) -> None:
    private_der = wrapping_keys[WrappingKeySpec.RSA_2048][0]
    algorithm = WrappingAlgorithm.RSA_AES_KEY_WRAP_SHA_256
    blob = flip(hybrid_blobs[fmt], at)
    spec = KeySpec.AES_256 if fmt == "direct" else KeySpec.EC_P256
    assert_opaque(lambda: unwrap_and_validate(private_der, algorithm, blob, spec, default_usage(spec)))
    if fmt != "guide":  # KWP and OAEP detect tampering themselves
        assert_opaque(lambda: unwrap_material(private_der, algorithm, blob))


@pytest.mark.openssl
@requires_openssl
def test_truncated_extended_and_misdirected_blobs(
    wrapping_keys: dict[WrappingKeySpec, tuple[bytes, str]],
    other_wrapping_key: tuple[bytes, str],
    hybrid_blobs: dict[str, bytes],
) -> None:
    private_der = wrapping_keys[WrappingKeySpec.RSA_2048][0]
    algorithm = WrappingAlgorithm.RSA_AES_KEY_WRAP_SHA_256
    messages = set()
    cases: list[tuple[bytes, bytes, WrappingAlgorithm]] = [(private_der, b"", algorithm)]
    for fmt, blob in hybrid_blobs.items():
        cases += [
            (private_der, blob[:-1], algorithm),
            (private_der, blob[: K - 1], algorithm),
            (private_der, blob[1:], algorithm),
            (private_der, blob + b"\x00" * 16, algorithm),
            # wrapped for another wrapping key of the same size, and of another size
            (other_wrapping_key[0], blob, algorithm),
            (wrapping_keys[WrappingKeySpec.RSA_4096][0], blob, algorithm),
            # the token says SHA-1, the user wrapped with SHA-256
            (private_der, blob, WrappingAlgorithm.RSA_AES_KEY_WRAP_SHA_1),
        ]
        if fmt != "direct":
            cases += [
                (private_der, blob[: K + 16], algorithm),
                (private_der, blob[: K + 8], algorithm),
                # RSAES_OAEP_* has no hybrid form
                (private_der, blob, WrappingAlgorithm.RSAES_OAEP_SHA_256),
            ]
    for key, blob, alg in cases:
        spec = KeySpec.EC_P256
        err = assert_opaque(partial(unwrap_and_validate, key, alg, blob, spec, default_usage(spec)))
        messages.add(err.message)
    assert messages == {UNWRAP_FAILED_MESSAGE}


@pytest.mark.openssl
@requires_openssl
def test_rsa_private_key_does_not_fit_rsaes_oaep(
    tmp_path: Path,
    wrapping_keys: dict[WrappingKeySpec, tuple[bytes, str]],
    private_keys: dict[KeySpec, bytes],
) -> None:
    private_der, public_pem = wrapping_keys[WrappingKeySpec.RSA_4096]
    write_public(tmp_path, public_pem)
    (tmp_path / "PlaintextKeyMaterial.bin").write_bytes(private_keys[KeySpec.RSA_2048])
    done = sh(tmp_path, GUIDE_WRAP_SYMMETRIC_SHA256, check=False)
    assert done.returncode != 0  # openssl: data too large for key size
    for algorithm in (WrappingAlgorithm.RSAES_OAEP_SHA_256, WrappingAlgorithm.RSAES_OAEP_SHA_1):
        with pytest.raises(ValidationError, match="RSA_AES_KEY_WRAP_SHA_256"):
            wrap_material(public_pem, algorithm, private_keys[KeySpec.RSA_2048])
        # a hybrid upload under an RSAES_OAEP_* token is refused opaquely
        blob = wrap_material(
            public_pem, WrappingAlgorithm.RSA_AES_KEY_WRAP_SHA_256, private_keys[KeySpec.RSA_2048]
        )
        assert_opaque(partial(unwrap_material, private_der, algorithm, blob))


# =============================================================================== client side


@pytest.mark.parametrize("style", ["auto", "direct", "kwp", "openssl"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_wrap_material_roundtrip(
    wrapping_keys: dict[WrappingKeySpec, tuple[bytes, str]], algorithm: WrappingAlgorithm, style: str
) -> None:
    private_der, public_pem = wrapping_keys[WrappingKeySpec.RSA_3072]
    aes = os.urandom(32)
    ec_der = validate_material(KeySpec.EC_P384, KeyUsage.SIGN_VERIFY, _ec_p384_pem())
    for material in (aes, ec_der):
        fits = len(material) <= max_direct_oaep_bytes(384, algorithm)
        if not algorithm.is_rsa_aes_key_wrap and (style in ("kwp", "openssl") or not fits):
            with pytest.raises(ValidationError):
                wrap_material(public_pem, algorithm, material, style=style)
            continue
        if style == "direct" and not fits:
            with pytest.raises(ValidationError, match="do not fit"):
                wrap_material(public_pem, algorithm, material, style=style)
            continue
        blob = wrap_material(public_pem, algorithm, material, style=style)
        result = unwrap(private_der, algorithm, blob)
        assert result.material == material
        expected_form = {
            "direct": WrapForm.DIRECT_OAEP,
            "kwp": WrapForm.RSA_AES_KWP,
            "openssl": WrapForm.RSA_AES_OPENSSL,
            "auto": WrapForm.RSA_AES_KWP
            if algorithm.is_rsa_aes_key_wrap and len(material) != 32
            else WrapForm.DIRECT_OAEP,
        }[style]
        assert result.form is expected_form
        if expected_form is WrapForm.RSA_AES_OPENSSL:
            assert blob[384:392] == OPENSSL_SALTED_MAGIC


def _ec_p384_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP384R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.openssl
@requires_openssl
@pytest.mark.parametrize("style", ["openssl", "kwp"])
def test_openssl_decrypts_what_wrap_material_writes(
    tmp_path: Path, wrapping_keys: dict[WrappingKeySpec, tuple[bytes, str]], style: str
) -> None:
    private_der, public_pem = wrapping_keys[WrappingKeySpec.RSA_2048]
    material = _ec_p384_pem()
    blob = wrap_material(public_pem, WrappingAlgorithm.RSA_AES_KEY_WRAP_SHA_1, material, style=style)
    private = serialization.load_der_private_key(private_der, None)
    assert isinstance(private, rsa.RSAPrivateKey)
    (tmp_path / "wrapping.pem").write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (tmp_path / "aes_key_wrapped.bin").write_bytes(blob[:K])
    (tmp_path / "wrapped.bin").write_bytes(blob[K:])
    sh(
        tmp_path,
        "openssl pkeyutl -decrypt -inkey wrapping.pem -pkeyopt rsa_padding_mode:oaep "
        "-pkeyopt rsa_oaep_md:sha1 -in aes_key_wrapped.bin -out aes_key.bin",
    )
    aes_key = (tmp_path / "aes_key.bin").read_bytes()
    assert len(aes_key) == 32
    if style == "openssl":
        assert b"\x00" not in aes_key and b"\n" not in aes_key
        sh(
            tmp_path,
            "openssl enc -d -aes-256-cbc -in wrapped.bin -out out.pem "
            "-pass file:aes_key.bin -pbkdf2 -iter 10",
        )
    else:
        sh(
            tmp_path,
            f"openssl enc -d -id-aes256-wrap-pad -iv A65959A6 -K {aes_key.hex()} "
            "-in wrapped.bin -out out.pem",
        )
    assert (tmp_path / "out.pem").read_bytes() == material


def test_wrap_material_rejects_bad_input(wrapping_keys: dict[WrappingKeySpec, tuple[bytes, str]]) -> None:
    public_pem = wrapping_keys[WrappingKeySpec.RSA_2048][1]
    with pytest.raises(ValidationError, match="auto, direct, kwp, openssl"):
        wrap_material(public_pem, WrappingAlgorithm.RSA_AES_KEY_WRAP_SHA_1, b"x" * 32, style="zip")
    with pytest.raises(ValidationError, match="empty"):
        wrap_material(public_pem, WrappingAlgorithm.RSA_AES_KEY_WRAP_SHA_1, b"")
    with pytest.raises(ValidationError, match="PEM public key"):
        wrap_material("not a key", WrappingAlgorithm.RSA_AES_KEY_WRAP_SHA_1, b"x" * 32)
    ec_public = _public_pem_of_ec()
    with pytest.raises(ValidationError, match="RSA public key"):
        wrap_material(ec_public, WrappingAlgorithm.RSA_AES_KEY_WRAP_SHA_1, b"x" * 32)


def _public_pem_of_ec() -> str:
    return (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_max_direct_oaep_bytes() -> None:
    assert max_direct_oaep_bytes(256, WrappingAlgorithm.RSAES_OAEP_SHA_256) == 190
    assert max_direct_oaep_bytes(256, WrappingAlgorithm.RSAES_OAEP_SHA_1) == 214


# =============================================================================== key pairs, parsing


@pytest.mark.parametrize("spec", list(WrappingKeySpec))
def test_generate_wrapping_key(
    wrapping_keys: dict[WrappingKeySpec, tuple[bytes, str]], spec: WrappingKeySpec
) -> None:
    private_der, public_pem = wrapping_keys[spec]
    private = serialization.load_der_private_key(private_der, None)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.key_size == spec.bits
    assert public_pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    public = serialization.load_pem_public_key(public_pem.encode())
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.public_numbers() == private.public_key().public_numbers()


def test_parse_helpers() -> None:
    assert parse_wrapping_key_spec("rsa_4096") is WrappingKeySpec.RSA_4096
    assert parse_wrapping_key_spec(" RSA-2048 ") is WrappingKeySpec.RSA_2048
    assert parse_wrapping_algorithm("RSA-AES-KEY-WRAP-SHA-256") is WrappingAlgorithm.RSA_AES_KEY_WRAP_SHA_256
    assert parse_wrapping_algorithm("rsaes_oaep_sha_1") is WrappingAlgorithm.RSAES_OAEP_SHA_1
    with pytest.raises(ValidationError) as info:
        parse_wrapping_key_spec("RSA_1024")
    assert "RSA_2048, RSA_3072, RSA_4096" in info.value.message
    with pytest.raises(ValidationError) as info:
        parse_wrapping_algorithm("RSAES_PKCS1_V1_5")
    for name in WrappingAlgorithm:
        assert name in info.value.message
    with pytest.raises(ValidationError):
        parse_wrapping_algorithm(None)
    with pytest.raises(ValidationError):
        parse_wrapping_key_spec(2048)
