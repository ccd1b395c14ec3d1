"""Material checks and fingerprints (DESIGN §6.3, §6.4) and the oracle rule of
:func:`kms.crypto.material.unwrap_and_validate`."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from kms.crypto.envelope import RootKeyring
from kms.crypto.material import (
    UnreadableKeyMaterial,
    fingerprint_matches,
    material_fingerprint,
    public_key_pem,
    unwrap_and_validate,
    validate_material,
)
from kms.crypto.wrapping import (
    UNWRAP_FAILED_MESSAGE,
    WrappingAlgorithm,
    WrappingKeySpec,
    generate_wrapping_key,
    unwrap,
    wrap_material,
)
from kms.errors import InvalidKeyMaterial, UnsupportedOperation
from kms.specs import KeySpec, KeyUsage

requires_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")

Encoding = serialization.Encoding
PrivateFormat = serialization.PrivateFormat
NoEncryption = serialization.NoEncryption
SIGN = KeyUsage.SIGN_VERIFY
ENCRYPT = KeyUsage.ENCRYPT_DECRYPT
CURVES = {KeySpec.EC_P256: ec.SECP256R1(), KeySpec.EC_P384: ec.SECP384R1(), KeySpec.EC_P521: ec.SECP521R1()}


@pytest.fixture(scope="module")
def rsa_keys() -> dict[KeySpec, rsa.RSAPrivateKey]:
    return {
        spec: rsa.generate_private_key(public_exponent=65537, key_size=spec.rsa_bits)
        for spec in (KeySpec.RSA_2048, KeySpec.RSA_3072, KeySpec.RSA_4096)
    }


@pytest.fixture(scope="module")
def ec_keys() -> dict[KeySpec, ec.EllipticCurvePrivateKey]:
    return {spec: ec.generate_private_key(curve) for spec, curve in CURVES.items()}


@pytest.fixture(scope="module")
def wrapping_key() -> tuple[bytes, str]:
    return generate_wrapping_key(WrappingKeySpec.RSA_2048)


@pytest.fixture(scope="module")
def fingerprint_keys() -> tuple[bytes, bytes]:
    old, new = RootKeyring([os.urandom(32)]), RootKeyring([os.urandom(32)])
    return new.derive("material-fingerprint"), old.derive("material-fingerprint")


def encodings(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> dict[str, bytes]:
    """Every accepted encoding of one key: PKCS#8 and PKCS#1 (RSA) / SEC1 (EC), PEM and DER."""
    return {
        f"{fmt_name}-{enc_name}": key.private_bytes(enc, fmt, NoEncryption())
        for fmt_name, fmt in (
            ("PKCS8", PrivateFormat.PKCS8),
            ("Traditional", PrivateFormat.TraditionalOpenSSL),
        )
        for enc_name, enc in (("PEM", Encoding.PEM), ("DER", Encoding.DER))
    }


def pkcs8_der(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())


# =============================================================================== AES_256


def test_aes_256_exactly_32_bytes() -> None:
    raw = os.urandom(32)
    assert validate_material(KeySpec.AES_256, ENCRYPT, raw) == raw
    assert validate_material(KeySpec.AES_256, ENCRYPT, bytearray(raw)) == raw  # type: ignore[arg-type]


def test_aes_256_empty_explains_openssl_rand() -> None:
    with pytest.raises(InvalidKeyMaterial) as info:
        validate_material(KeySpec.AES_256, ENCRYPT, b"")
    message = info.value.message
    assert "exactly 32 bytes" in message and "got 0 bytes" in message
    assert "`openssl rand -out PlaintextKeyMaterial.bin` without a length writes an empty file" in message
    assert "`openssl rand -out PlaintextKeyMaterial.bin 32`" in message


@pytest.mark.parametrize("size", [1, 16, 31, 33, 64])
def test_aes_256_wrong_size(size: int) -> None:
    with pytest.raises(InvalidKeyMaterial) as info:
        validate_material(KeySpec.AES_256, ENCRYPT, os.urandom(size))
    assert f"got {size} bytes" in info.value.message
    assert "exactly 32 bytes" in info.value.message
    assert info.value.code == "InvalidKeyMaterial"


def test_aes_256_given_a_private_key(ec_keys: dict[KeySpec, ec.EllipticCurvePrivateKey]) -> None:
    pem = ec_keys[KeySpec.EC_P256].private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    with pytest.raises(InvalidKeyMaterial, match="looks like a PEM or DER private key"):
        validate_material(KeySpec.AES_256, ENCRYPT, pem)


# =============================================================================== asymmetric


@pytest.mark.parametrize("spec", [KeySpec.RSA_2048, KeySpec.RSA_3072, KeySpec.RSA_4096])
def test_rsa_every_encoding(rsa_keys: dict[KeySpec, rsa.RSAPrivateKey], spec: KeySpec) -> None:
    key = rsa_keys[spec]
    forms = encodings(key)
    if spec is not KeySpec.RSA_2048:  # each RSA load runs OpenSSL's key check; keep it quick
        forms = {name: forms[name] for name in ("Traditional-PEM", "PKCS8-DER")}
    for usage in (ENCRYPT, SIGN):
        for name, raw in forms.items():
            assert validate_material(spec, usage, raw) == pkcs8_der(key), name


@pytest.mark.parametrize("spec", list(CURVES))
def test_ec_every_encoding(ec_keys: dict[KeySpec, ec.EllipticCurvePrivateKey], spec: KeySpec) -> None:
    key = ec_keys[spec]
    for name, raw in encodings(key).items():
        assert validate_material(spec, SIGN, raw) == pkcs8_der(key), name


def test_pem_tolerances(ec_keys: dict[KeySpec, ec.EllipticCurvePrivateKey]) -> None:
    key = ec_keys[KeySpec.EC_P256]
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption())
    for variant in (pem.replace(b"\n", b"\r\n"), b"\n  " + pem + b"\n\n"):
        assert validate_material(KeySpec.EC_P256, SIGN, variant) == pkcs8_der(key)


@pytest.mark.openssl
@requires_openssl
def test_openssl_ecparam_genkey_output(tmp_path: Path) -> None:
    """``openssl ecparam -genkey`` writes an EC PARAMETERS block before the key."""
    subprocess.run(
        shlex.split("openssl ecparam -genkey -name secp384r1 -out key.pem"),
        cwd=tmp_path,
        check=True,
        timeout=60,
    )
    pem = (tmp_path / "key.pem").read_bytes()
    assert pem.startswith(b"-----BEGIN EC PARAMETERS-----")
    canonical = validate_material(KeySpec.EC_P384, SIGN, pem)
    assert canonical.startswith(b"\x30")


def test_rsa_key_for_ec_spec(rsa_keys: dict[KeySpec, rsa.RSAPrivateKey]) -> None:
    raw = rsa_keys[KeySpec.RSA_2048].private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    with pytest.raises(InvalidKeyMaterial) as info:
        validate_material(KeySpec.EC_P256, SIGN, raw)
    assert type(info.value) is InvalidKeyMaterial  # a readable key of the wrong type: detailed
    assert "RSA 2048-bit private key" in info.value.message
    assert "EC_P256 needs an EC P-256 private key" in info.value.message


def test_ec_key_for_rsa_spec(ec_keys: dict[KeySpec, ec.EllipticCurvePrivateKey]) -> None:
    raw = pkcs8_der(ec_keys[KeySpec.EC_P384])
    with pytest.raises(InvalidKeyMaterial) as info:
        validate_material(KeySpec.RSA_3072, ENCRYPT, raw)
    assert "EC private key on curve P-384" in info.value.message
    assert "RSA 3072-bit" in info.value.message
    assert "rsa_keygen_bits:3072" in info.value.message


def test_wrong_rsa_size(rsa_keys: dict[KeySpec, rsa.RSAPrivateKey]) -> None:
    raw = rsa_keys[KeySpec.RSA_2048].private_bytes(
        Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption()
    )
    with pytest.raises(InvalidKeyMaterial) as info:
        validate_material(KeySpec.RSA_4096, ENCRYPT, raw)
    assert "RSA 2048-bit" in info.value.message and "RSA 4096-bit" in info.value.message


def test_wrong_curve(ec_keys: dict[KeySpec, ec.EllipticCurvePrivateKey]) -> None:
    with pytest.raises(InvalidKeyMaterial) as info:
        validate_material(KeySpec.EC_P256, SIGN, pkcs8_der(ec_keys[KeySpec.EC_P521]))
    assert "P-521" in info.value.message and "P-256" in info.value.message
    k1 = pkcs8_der(ec.generate_private_key(ec.SECP256K1()))
    with pytest.raises(InvalidKeyMaterial, match="secp256k1"):
        validate_material(KeySpec.EC_P256, SIGN, k1)


def test_other_key_types() -> None:
    ed = ed25519.Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    with pytest.raises(InvalidKeyMaterial, match="Ed25519"):
        validate_material(KeySpec.EC_P256, SIGN, ed)


def test_public_keys_rejected(
    rsa_keys: dict[KeySpec, rsa.RSAPrivateKey], ec_keys: dict[KeySpec, ec.EllipticCurvePrivateKey]
) -> None:
    public = rsa_keys[KeySpec.RSA_2048].public_key()
    ec_public = ec_keys[KeySpec.EC_P256].public_key()
    cases = [
        (
            KeySpec.RSA_2048,
            public.public_bytes(Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        ),
        (KeySpec.RSA_2048, public.public_bytes(Encoding.PEM, serialization.PublicFormat.PKCS1)),
        (
            KeySpec.RSA_2048,
            public.public_bytes(Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        ),
        (
            KeySpec.EC_P256,
            ec_public.public_bytes(Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        ),
        (
            KeySpec.EC_P256,
            ec_public.public_bytes(Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        ),
    ]
    for spec, raw in cases:
        with pytest.raises(UnreadableKeyMaterial, match="public key"):
            validate_material(spec, SIGN, raw)


def test_certificate_rejected(ec_keys: dict[KeySpec, ec.EllipticCurvePrivateKey]) -> None:
    key = ec_keys[KeySpec.EC_P256]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now)
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(UnreadableKeyMaterial, match="CERTIFICATE"):
        validate_material(KeySpec.EC_P256, SIGN, cert.public_bytes(Encoding.PEM))


def test_encrypted_keys_rejected(
    rsa_keys: dict[KeySpec, rsa.RSAPrivateKey], ec_keys: dict[KeySpec, ec.EllipticCurvePrivateKey]
) -> None:
    pw = serialization.BestAvailableEncryption(b"secret")
    cases = [
        (KeySpec.EC_P256, ec_keys[KeySpec.EC_P256].private_bytes(Encoding.PEM, PrivateFormat.PKCS8, pw)),
        (KeySpec.EC_P256, ec_keys[KeySpec.EC_P256].private_bytes(Encoding.DER, PrivateFormat.PKCS8, pw)),
        (
            KeySpec.EC_P256,
            ec_keys[KeySpec.EC_P256].private_bytes(Encoding.PEM, PrivateFormat.TraditionalOpenSSL, pw),
        ),
        (
            KeySpec.RSA_2048,
            rsa_keys[KeySpec.RSA_2048].private_bytes(Encoding.PEM, PrivateFormat.TraditionalOpenSSL, pw),
        ),
    ]
    for spec, raw in cases:
        with pytest.raises(UnreadableKeyMaterial, match="encrypted"):
            validate_material(spec, SIGN, raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        os.urandom(32),
        os.urandom(500),
        b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n",
    ],
    ids=["empty", "32-bytes", "garbage", "broken-pem"],
)
def test_unreadable(raw: bytes) -> None:
    with pytest.raises(UnreadableKeyMaterial) as info:
        validate_material(KeySpec.RSA_2048, ENCRYPT, raw)
    assert "RSA 2048-bit private key" in info.value.message
    assert info.value.code == "InvalidKeyMaterial"


def test_usage_must_fit_spec(
    rsa_keys: dict[KeySpec, rsa.RSAPrivateKey], ec_keys: dict[KeySpec, ec.EllipticCurvePrivateKey]
) -> None:
    with pytest.raises(UnsupportedOperation, match="SIGN_VERIFY"):
        validate_material(KeySpec.EC_P256, ENCRYPT, pkcs8_der(ec_keys[KeySpec.EC_P256]))
    with pytest.raises(UnsupportedOperation):
        validate_material(KeySpec.AES_256, SIGN, os.urandom(32))
    der = pkcs8_der(rsa_keys[KeySpec.RSA_2048])
    assert validate_material(KeySpec.RSA_2048, SIGN, der) == der
    assert validate_material(KeySpec.RSA_2048, ENCRYPT, der) == der


def test_messages_carry_no_key_bytes(rsa_keys: dict[KeySpec, rsa.RSAPrivateKey]) -> None:
    raw = rsa_keys[KeySpec.RSA_2048].private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    body = raw.splitlines()[1].decode()
    secret = os.urandom(31)
    for spec, material in ((KeySpec.RSA_3072, raw), (KeySpec.AES_256, secret), (KeySpec.AES_256, raw)):
        with pytest.raises(InvalidKeyMaterial) as info:
            validate_material(spec, ENCRYPT, material)
        assert body not in info.value.message
        assert secret.hex() not in info.value.message and repr(secret) not in info.value.message


# =============================================================================== fingerprints


def test_same_key_any_encoding_same_fingerprint(
    rsa_keys: dict[KeySpec, rsa.RSAPrivateKey],
    ec_keys: dict[KeySpec, ec.EllipticCurvePrivateKey],
    fingerprint_keys: tuple[bytes, bytes],
) -> None:
    fp_key = fingerprint_keys[0]
    keys: list[tuple[KeySpec, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey]] = [
        (KeySpec.RSA_2048, rsa_keys[KeySpec.RSA_2048]),
        *ec_keys.items(),
    ]
    for spec, key in keys:
        usage = SIGN
        forms = encodings(key)
        expected = material_fingerprint(fp_key, spec, pkcs8_der(key))
        assert len(expected) == 64 and int(expected, 16) >= 0
        for name, raw in forms.items():
            canonical = validate_material(spec, usage, raw)
            assert material_fingerprint(fp_key, spec, canonical) == expected, name
            assert material_fingerprint(fp_key, spec, raw) == expected, name  # any encoding
            assert fingerprint_matches([fp_key], spec, raw, expected)


def test_rsa_fingerprint_ignores_d_representation(rsa_keys: dict[KeySpec, rsa.RSAPrivateKey]) -> None:
    """d mod λ(n) (OpenSSL) and d mod φ(n) (some other tools) are the same key."""
    key = rsa_keys[KeySpec.RSA_2048]
    n = key.private_numbers()
    phi = (n.p - 1) * (n.q - 1)
    d_phi = pow(n.public_numbers.e, -1, phi)
    other = rsa.RSAPrivateNumbers(
        p=n.q,  # primes swapped too
        q=n.p,
        d=d_phi,
        dmp1=d_phi % (n.q - 1),
        dmq1=d_phi % (n.p - 1),
        iqmp=rsa.rsa_crt_iqmp(n.q, n.p),
        public_numbers=n.public_numbers,
    ).private_key()
    fp_key = os.urandom(32)
    assert material_fingerprint(fp_key, KeySpec.RSA_2048, pkcs8_der(other)) == material_fingerprint(
        fp_key, KeySpec.RSA_2048, pkcs8_der(key)
    )


def test_different_keys_differ(
    rsa_keys: dict[KeySpec, rsa.RSAPrivateKey],
    ec_keys: dict[KeySpec, ec.EllipticCurvePrivateKey],
    fingerprint_keys: tuple[bytes, bytes],
) -> None:
    fp_key = fingerprint_keys[0]
    prints = {
        material_fingerprint(fp_key, KeySpec.AES_256, os.urandom(32)),
        material_fingerprint(fp_key, KeySpec.AES_256, os.urandom(32)),
        material_fingerprint(fp_key, KeySpec.RSA_2048, pkcs8_der(rsa_keys[KeySpec.RSA_2048])),
        material_fingerprint(fp_key, KeySpec.RSA_3072, pkcs8_der(rsa_keys[KeySpec.RSA_3072])),
        material_fingerprint(fp_key, KeySpec.EC_P256, pkcs8_der(ec_keys[KeySpec.EC_P256])),
        material_fingerprint(fp_key, KeySpec.EC_P256, pkcs8_der(ec.generate_private_key(ec.SECP256R1()))),
    }
    assert len(prints) == 6
    # another fingerprint key gives another fingerprint for the same material
    aes = os.urandom(32)
    assert material_fingerprint(fingerprint_keys[0], KeySpec.AES_256, aes) != material_fingerprint(
        fingerprint_keys[1], KeySpec.AES_256, aes
    )


def test_fingerprint_matches_with_rotation(
    ec_keys: dict[KeySpec, ec.EllipticCurvePrivateKey], fingerprint_keys: tuple[bytes, bytes]
) -> None:
    new, old = fingerprint_keys
    for spec, canonical in (
        (KeySpec.AES_256, os.urandom(32)),
        (KeySpec.EC_P384, pkcs8_der(ec_keys[KeySpec.EC_P384])),
    ):
        stored = material_fingerprint(old, spec, canonical)
        assert fingerprint_matches([new, old], spec, canonical, stored)
        assert fingerprint_matches([new, old], spec, canonical, stored.upper())
        assert not fingerprint_matches([new], spec, canonical, stored)
        assert not fingerprint_matches([], spec, canonical, stored)
        assert not fingerprint_matches(
            [new, old], spec, canonical, stored[:-1] + ("0" if stored[-1] != "0" else "1")
        )
        assert not fingerprint_matches([new, old], spec, canonical, "")
        assert not fingerprint_matches([new, old], spec, canonical, "é" * 64)
    other = pkcs8_der(ec.generate_private_key(ec.SECP384R1()))
    stored = material_fingerprint(new, KeySpec.EC_P384, pkcs8_der(ec_keys[KeySpec.EC_P384]))
    assert not fingerprint_matches([new, old], KeySpec.EC_P384, other, stored)


def test_fingerprint_with_keyring_purpose_keys() -> None:
    first, second = os.urandom(32), os.urandom(32)
    before = RootKeyring([first])
    after = RootKeyring([second, first])  # rotation: new primary, old still listed
    aes = os.urandom(32)
    stored = material_fingerprint(before.derive("material-fingerprint"), KeySpec.AES_256, aes)
    assert fingerprint_matches(after.derive_all("material-fingerprint"), KeySpec.AES_256, aes, stored)
    assert not fingerprint_matches(after.derive_all("import-token"), KeySpec.AES_256, aes, stored)


def test_public_key_pem(rsa_keys: dict[KeySpec, rsa.RSAPrivateKey]) -> None:
    key = rsa_keys[KeySpec.RSA_2048]
    expected = (
        key.public_key().public_bytes(Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    )
    assert public_key_pem(pkcs8_der(key)) == expected
    ec_key = ec.generate_private_key(ec.SECP521R1())
    assert public_key_pem(pkcs8_der(ec_key)).startswith("-----BEGIN PUBLIC KEY-----")


# =============================================================================== unwrap + validate


def test_authenticated_forms_keep_detailed_errors(wrapping_key: tuple[bytes, str]) -> None:
    private_der, public_pem = wrapping_key
    alg = WrappingAlgorithm.RSA_AES_KEY_WRAP_SHA_256
    for style in ("direct", "kwp"):
        blob = wrap_material(public_pem, alg, os.urandom(31), style=style)
        with pytest.raises(InvalidKeyMaterial, match="got 31 bytes"):
            unwrap_and_validate(private_der, alg, blob, KeySpec.AES_256, ENCRYPT)


def test_openssl_form_hides_unreadable_findings(
    wrapping_key: tuple[bytes, str], rsa_keys: dict[KeySpec, rsa.RSAPrivateKey]
) -> None:
    """AES-CBC is malleable: "not key material" must look like an unwrap failure, or the
    two answers form a padding oracle. A readable key of the wrong size stays detailed."""
    private_der, public_pem = wrapping_key
    alg = WrappingAlgorithm.RSA_AES_KEY_WRAP_SHA_1
    for material in (os.urandom(31), os.urandom(32), b"hello"):
        blob = wrap_material(public_pem, alg, material, style="openssl")
        assert unwrap(private_der, alg, blob).material == material
        with pytest.raises(InvalidKeyMaterial) as info:
            unwrap_and_validate(private_der, alg, blob, KeySpec.RSA_2048, ENCRYPT)
        assert info.value.message == UNWRAP_FAILED_MESSAGE
        if len(material) != 32:
            with pytest.raises(InvalidKeyMaterial) as info:
                unwrap_and_validate(private_der, alg, blob, KeySpec.AES_256, ENCRYPT)
            assert info.value.message == UNWRAP_FAILED_MESSAGE
    aes = os.urandom(32)
    blob = wrap_material(public_pem, alg, aes, style="openssl")
    assert unwrap_and_validate(private_der, alg, blob, KeySpec.AES_256, ENCRYPT) == aes

    raw = rsa_keys[KeySpec.RSA_2048].private_bytes(
        Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption()
    )
    blob = wrap_material(public_pem, alg, raw, style="openssl")
    with pytest.raises(InvalidKeyMaterial, match="RSA 2048-bit private key"):
        unwrap_and_validate(private_der, alg, blob, KeySpec.RSA_3072, ENCRYPT)
    with pytest.raises(UnsupportedOperation):
        unwrap_and_validate(private_der, alg, blob, KeySpec.EC_P256, ENCRYPT)
