"""Generation of key material for each key spec.

Material is returned in one canonical encoding: the raw 32 bytes for AES_256,
unencrypted PKCS#8 DER for RSA and EC private keys.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kms.specs import KeySpec

_CURVES: dict[KeySpec, ec.EllipticCurve] = {
    KeySpec.EC_P256: ec.SECP256R1(),
    KeySpec.EC_P384: ec.SECP384R1(),
    KeySpec.EC_P521: ec.SECP521R1(),
}


def generate_material(spec: KeySpec) -> bytes:
    if spec is KeySpec.AES_256:
        return os.urandom(32)
    if spec.is_rsa:
        private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = rsa.generate_private_key(
            public_exponent=65537, key_size=spec.rsa_bits
        )
    else:
        private = ec.generate_private_key(_CURVES[spec])
    return private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def generate_rsa_private_key_der(bits: int) -> bytes:
    """A bare RSA key pair (PKCS#8 DER), e.g. for wrapping keys and benchmarks."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
