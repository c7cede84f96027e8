"""Identifiers, secrets and timestamps."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from ulid import ULID


def new_id(prefix: str) -> str:
    """`job_01JD...`: a prefixed ULID (time-sortable, 80 random bits)."""
    return f"{prefix}_{ULID()}"


def token(nbytes: int = 16) -> str:
    """An unguessable URL-safe token (128 bits by default)."""
    return secrets.token_urlsafe(nbytes)


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime | None) -> str | None:
    """UTC ISO 8601 with milliseconds and `Z`."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    elif dt.utcoffset():
        dt = dt.astimezone(UTC)
    return dt.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
