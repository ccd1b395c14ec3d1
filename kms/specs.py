"""Key specs, types, usages and origins (DESIGN §5 "Keys"), and the rules tying them."""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from kms.errors import ValidationError


class KeyType(StrEnum):
    SYMMETRIC = "SYMMETRIC"
    ASYMMETRIC = "ASYMMETRIC"


class KeySpec(StrEnum):
    AES_256 = "AES_256"
    RSA_2048 = "RSA_2048"
    RSA_3072 = "RSA_3072"
    RSA_4096 = "RSA_4096"
    EC_P256 = "EC_P256"
    EC_P384 = "EC_P384"
    EC_P521 = "EC_P521"

    @property
    def key_type(self) -> KeyType:
        return KeyType.SYMMETRIC if self is KeySpec.AES_256 else KeyType.ASYMMETRIC

    @property
    def is_rsa(self) -> bool:
        return self.value.startswith("RSA_")

    @property
    def is_ec(self) -> bool:
        return self.value.startswith("EC_")

    @property
    def rsa_bits(self) -> int:
        if not self.is_rsa:
            raise ValueError(f"{self.value} is not an RSA spec")
        return int(self.value.split("_")[1])


class KeyUsage(StrEnum):
    ENCRYPT_DECRYPT = "ENCRYPT_DECRYPT"
    SIGN_VERIFY = "SIGN_VERIFY"


class Origin(StrEnum):
    VNGCLOUD = "VNGCLOUD"
    EXTERNAL = "EXTERNAL"


class Manager(StrEnum):
    CUSTOMER = "CUSTOMER"
    VNGCLOUD = "VNGCLOUD"


def allowed_usages(spec: KeySpec) -> tuple[KeyUsage, ...]:
    if spec is KeySpec.AES_256:
        return (KeyUsage.ENCRYPT_DECRYPT,)
    if spec.is_rsa:
        return (KeyUsage.ENCRYPT_DECRYPT, KeyUsage.SIGN_VERIFY)
    return (KeyUsage.SIGN_VERIFY,)


def default_usage(spec: KeySpec) -> KeyUsage:
    return allowed_usages(spec)[0]


E = TypeVar("E", bound=StrEnum)


def parse_enum(enum: type[E], value: object, field: str) -> E:
    """A caller's string (any case, surrounding blanks) as a member of ``enum``, or a
    ValidationError listing the allowed values."""
    if isinstance(value, enum):
        return value
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string, one of: {', '.join(enum)}")
    try:
        return enum(value.strip().upper())
    except ValueError:
        raise ValidationError(f"{field} {value!r} is not supported; use one of: {', '.join(enum)}") from None


def parse_key_spec(value: object) -> KeySpec:
    return parse_enum(KeySpec, value, "key_spec")


def parse_origin(value: object | None) -> Origin:
    return Origin.VNGCLOUD if value is None else parse_enum(Origin, value, "origin")


def resolve_key_config(
    key_spec: object, key_usage: object | None = None, key_type: object | None = None
) -> tuple[KeySpec, KeyUsage, KeyType]:
    """Validate a (spec, usage, type) triple, filling the defaults of DESIGN §5."""
    spec = parse_key_spec(key_spec)
    usage = default_usage(spec) if key_usage is None else parse_enum(KeyUsage, key_usage, "key_usage")
    if usage not in allowed_usages(spec):
        allowed = ", ".join(allowed_usages(spec))
        raise ValidationError(f"key_usage {usage} does not fit key_spec {spec}; use {allowed}")
    if key_type is not None:
        kind = parse_enum(KeyType, key_type, "key_type")
        if kind is not spec.key_type:
            raise ValidationError(f"key_type {kind} does not agree with key_spec {spec} ({spec.key_type})")
    return spec, usage, spec.key_type
