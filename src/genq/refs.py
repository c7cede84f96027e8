"""References inside job inputs: files (`file_...`, `job_.../name`) and models
(`model_...`), found through the `format` the engine's JSON Schema gives them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

FILE_FORMAT, MODEL_FORMAT = "genq-file", "genq-model"


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return dict(root.get("$defs", {}).get(ref.rsplit("/", 1)[1], {}))
    return schema


def find_refs(
    schema: dict[str, Any], value: Any, root: dict[str, Any] | None = None, path: str = "input"
) -> Iterator[tuple[str, str, str]]:
    """Yield (format, json path, ref) for every file or model reference in `value`."""
    root = root or schema
    schema = _resolve(schema, root)
    fmt = schema.get("format")
    if isinstance(value, str) and fmt in (FILE_FORMAT, MODEL_FORMAT):
        yield fmt, path, value
        return
    for alt in schema.get("anyOf", []) + schema.get("oneOf", []):
        yield from find_refs(alt, value, root, path)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key, item in value.items():
            if key in props:
                yield from find_refs(props[key], item, root, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from find_refs(schema["items"], item, root, f"{path}[{i}]")
