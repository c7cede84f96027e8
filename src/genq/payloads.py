"""What genq accepts for storing: free-form JSON (a job's input, metadata and webhook, a
model's metadata) and plain text (names, purposes, file names).

Everything accepted is written to the database and rendered back in every answer,
event and webhook for as long as it is kept, so it is checked once, before it is
committed, against what both databases and the serializer can hold:

- no NUL character in any string or key (PostgreSQL's `text` and `jsonb` cannot hold
  one; SQLite could, but both databases must behave alike);
- containers nested at most `MAX_DEPTH` deep (orjson writes at most 254 levels; no
  legitimate input comes near);
- at most `max_bytes` once serialized, where a field has its own limit (metadata).

A violation is a 422 `invalid_input` naming the field (`metadata.a.b`, `input.prompt`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

from genq.errors import InvalidInput

MAX_DEPTH = 32
METADATA_MAX_DEPTH = 8
METADATA_MAX_BYTES = 16 << 10


def _path(field: str, key: object) -> str:
    return f"{field}[{key}]" if isinstance(key, int) else f"{field}.{key}"


def _reject(field: str, message: str, kind: str) -> InvalidInput:
    return InvalidInput(
        f"{field}: {message}", errors=[{"field": field, "message": message, "type": kind}]
    )


def check_text(value: str | None, field: str) -> None:
    """A plain string to store: no NUL character."""
    if value is not None and "\x00" in value:
        raise _reject(field, "must not contain NUL (\\u0000) characters", "nul_character")


def clean_text(value: str) -> str:
    """An engine's own text (progress messages, log lines, error messages): NUL
    characters become U+FFFD rather than failing the write that stores them."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def check_json(
    value: Any, field: str, *, max_depth: int = MAX_DEPTH, max_bytes: int | None = None
) -> None:
    """Free-form JSON to store: strings and keys without NUL, containers at most
    `max_depth` deep, JSON types only, and (with `max_bytes`) at most that many bytes
    serialized."""
    # Iterative, so no input can exhaust the interpreter's stack while being checked.
    stack: list[tuple[Any, str, int]] = [(value, field, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            check_text(item, path)
        elif isinstance(item, Mapping):
            if depth >= max_depth:
                raise _reject(path, f"nested deeper than {max_depth} levels", "too_deep")
            for key, sub in item.items():
                if not isinstance(key, str):
                    raise _reject(path, "object keys must be strings", "type")
                check_text(key, _path(path, key))
                stack.append((sub, _path(path, key), depth + 1))
        elif isinstance(item, list | tuple):
            if depth >= max_depth:
                raise _reject(path, f"nested deeper than {max_depth} levels", "too_deep")
            stack.extend((sub, _path(path, i), depth + 1) for i, sub in enumerate(item))
        elif isinstance(item, float):
            if item != item or item in (float("inf"), float("-inf")):
                raise _reject(path, "must be a finite number", "type")
        elif not (item is None or isinstance(item, bool | int)):
            raise _reject(path, f"{type(item).__name__} is not a JSON value", "type")
        elif isinstance(item, int) and not -(1 << 63) <= item < 1 << 63:
            raise _reject(path, "integers must fit in 64 bits", "type")
    if max_bytes is not None:
        size = len(orjson.dumps(value))
        if size > max_bytes:
            raise _reject(field, f"is {size} bytes serialized; at most {max_bytes}", "too_large")


def check_metadata(value: Mapping[str, Any] | None, field: str = "metadata") -> None:
    """A job's or model's metadata: small, shallow, storable JSON."""
    if value:
        check_json(value, field, max_depth=METADATA_MAX_DEPTH, max_bytes=METADATA_MAX_BYTES)


def dumps(value: Any) -> bytes:
    """`orjson.dumps`, falling back to the standard library for what orjson refuses
    (nesting past 254 levels in rows stored before these checks existed), so a row
    that was accepted always renders."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
