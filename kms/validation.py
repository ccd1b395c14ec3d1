"""Validation of caller input that is not about specs: names, tags, windows."""

from __future__ import annotations

from typing import Any

from kms.commands import DEFAULT_PENDING_WINDOW_DAYS, MAX_PENDING_WINDOW_DAYS, MIN_PENDING_WINDOW_DAYS
from kms.errors import ValidationError

MAX_NAME = 256
MAX_DESCRIPTION = 8192
MAX_TAGS = 50
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256


def key_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("name is required: a non-empty string")
    value = value.strip()
    if len(value) > MAX_NAME:
        raise ValidationError(f"name is {len(value)} characters; the limit is {MAX_NAME}")
    return value


def description(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError("description must be a string")
    if len(value) > MAX_DESCRIPTION:
        raise ValidationError(f"description is {len(value)} characters; the limit is {MAX_DESCRIPTION}")
    return value


def tags(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError('tags must be an object of string keys and values, e.g. {"team": "billing"}')
    if len(value) > MAX_TAGS:
        raise ValidationError(f"{len(value)} tags given; the limit is {MAX_TAGS}")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k or len(k) > MAX_TAG_KEY:
            raise ValidationError(f"tag keys must be strings of 1 to {MAX_TAG_KEY} characters")
        if not isinstance(v, str) or len(v) > MAX_TAG_VALUE:
            raise ValidationError(f"tag {k!r}: values must be strings of at most {MAX_TAG_VALUE} characters")
        out[k] = v
    return out


def tag_filter(value: str) -> tuple[str, str]:
    name, sep, tag_value = value.partition(":")
    if not sep or not name:
        raise ValidationError("tag filter must look like tag=key:value")
    return name, tag_value


def pending_window_days(value: Any) -> int:
    if value is None:
        return DEFAULT_PENDING_WINDOW_DAYS
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(
            "pending_window_days must be an integer from "
            f"{MIN_PENDING_WINDOW_DAYS} to {MAX_PENDING_WINDOW_DAYS}"
        )
    if not MIN_PENDING_WINDOW_DAYS <= value <= MAX_PENDING_WINDOW_DAYS:
        raise ValidationError(
            f"pending_window_days is {value}; the waiting period must be "
            f"{MIN_PENDING_WINDOW_DAYS} to {MAX_PENDING_WINDOW_DAYS} days"
        )
    return value


def known_fields(body: dict[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ValidationError(
            f"unknown field(s) for {what}: {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
