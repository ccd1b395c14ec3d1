"""One error root with stable codes (DESIGN §5).

Every error the service answers is a :class:`KmsError` subclass. ``code`` is the
stable string callers match on, ``http_status`` the one mapping to HTTP, and the
message tells the user what to do. Messages never carry secrets.
"""

from __future__ import annotations

from typing import Any, ClassVar


class KmsError(Exception):
    """Root of every error the service reports to a caller."""

    code: ClassVar[str] = "InternalError"
    http_status: ClassVar[int] = 500
    #: Permanent errors end an operation FAILED; transient ones are retried.
    transient: ClassVar[bool] = False

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class ValidationError(KmsError):
    code = "ValidationError"
    http_status = 400


class Unauthenticated(KmsError):
    code = "Unauthenticated"
    http_status = 401


class Forbidden(KmsError):
    code = "Forbidden"
    http_status = 403


class ManagedKeyReadOnly(KmsError):
    code = "ManagedKeyReadOnly"
    http_status = 403


class NotFound(KmsError):
    code = "NotFound"
    http_status = 404


class InvalidKeyState(KmsError):
    code = "InvalidKeyState"
    http_status = 409


class KeyDisabled(KmsError):
    code = "KeyDisabled"
    http_status = 409


class NoActiveKeyMaterial(KmsError):
    code = "NoActiveKeyMaterial"
    http_status = 409


class IdempotencyConflict(KmsError):
    code = "IdempotencyConflict"
    http_status = 409


class UnsupportedOperation(KmsError):
    code = "UnsupportedOperation"
    http_status = 400


class InvalidImportToken(KmsError):
    code = "InvalidImportToken"
    http_status = 400


class ExpiredImportToken(KmsError):
    code = "ExpiredImportToken"
    http_status = 400


class IncorrectKeyMaterial(KmsError):
    code = "IncorrectKeyMaterial"
    http_status = 400


class InvalidKeyMaterial(KmsError):
    code = "InvalidKeyMaterial"
    http_status = 400


class InvalidCiphertext(KmsError):
    code = "InvalidCiphertext"
    http_status = 400


class PayloadTooLarge(KmsError):
    code = "PayloadTooLarge"
    http_status = 413


class RateLimited(KmsError):
    code = "RateLimited"
    http_status = 429


class Unavailable(KmsError):
    code = "Unavailable"
    http_status = 503
    transient = True


class InternalError(KmsError):
    """Something unexpected: the message is generic on purpose."""

    code = "InternalError"
    http_status = 500


ALL_ERRORS: tuple[type[KmsError], ...] = (
    ValidationError,
    Unauthenticated,
    Forbidden,
    ManagedKeyReadOnly,
    NotFound,
    InvalidKeyState,
    KeyDisabled,
    NoActiveKeyMaterial,
    IdempotencyConflict,
    UnsupportedOperation,
    InvalidImportToken,
    ExpiredImportToken,
    IncorrectKeyMaterial,
    InvalidKeyMaterial,
    InvalidCiphertext,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
    InternalError,
)

_BY_CODE = {cls.code: cls for cls in ALL_ERRORS}


def error_from_code(code: str, message: str) -> KmsError:
    """Rebuild an error recorded on an operation (worker → web)."""
    return _BY_CODE.get(code, InternalError)(message)
