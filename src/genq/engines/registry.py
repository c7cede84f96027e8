"""Finding engines: the `genq.engines` entry-point group plus `GENQ_ENGINES` import
paths (`module:attr`). An attribute may be an engine, an engine class, or a list of
either, so one plug-in package can ship many engines."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel

from genq.engines.contract import Engine

log = logging.getLogger(__name__)
_REQUIRED = ("name", "task", "input_model", "run")
_DEFAULTS: dict[str, Any] = {
    "media": (),
    "price": 1,
    "typical_duration_s": 5.0,
    "concurrency": 4,
    "timeout_s": 600.0,
    "description": "",
}


class EngineLoadError(Exception):
    """An engine could not be loaded or does not honour the contract."""


def _instances(obj: Any) -> Iterable[Any]:
    if isinstance(obj, type):
        yield obj()
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _instances(item)
    else:
        yield obj


def _check(engine: Any, origin: str) -> Engine:
    missing = [a for a in _REQUIRED if not hasattr(engine, a)]
    if missing:
        raise EngineLoadError(f"{origin}: engine lacks {', '.join(missing)}")
    for attr, default in _DEFAULTS.items():
        if not hasattr(engine, attr):
            setattr(engine, attr, default)
    model = engine.input_model
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise EngineLoadError(f"{origin}: input_model must be a pydantic model class")
    if engine.concurrency < 1:
        raise EngineLoadError(f"{origin}: concurrency must be at least 1")
    return engine  # type: ignore[no-any-return]


def import_path(path: str) -> Any:
    module, _, attr = path.partition(":")
    if not attr:
        raise EngineLoadError(f"{path!r}: expected 'module:attribute'")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise EngineLoadError(f"cannot import {path!r}: {exc}") from exc
    return obj


def load_engines(
    extra: Iterable[str] = (), *, entry_points_group: str | None = "genq.engines"
) -> dict[str, Engine]:
    """All engines by name; later sources (GENQ_ENGINES) override entry points."""
    found: dict[str, Engine] = {}
    sources: list[tuple[str, Any]] = []
    if entry_points_group:
        for ep in entry_points(group=entry_points_group):
            try:
                sources.append((f"entry point {ep.name}", ep.load()))
            except Exception as exc:  # a broken plug-in must not stop the server
                log.error("engine entry point %s failed to load: %s", ep.name, exc)
    sources += [(path, import_path(path)) for path in extra]
    for origin, obj in sources:
        for engine in _instances(obj):
            checked = _check(engine, origin)
            found[checked.name] = checked
    return found


def describe(engine: Engine) -> Mapping[str, Any]:
    return {
        "name": engine.name,
        "object": "engine",
        "task": engine.task,
        "description": getattr(engine, "description", "") or (engine.__doc__ or "").strip(),
        "media": list(engine.media),
        "price": engine.price,
        "typical_duration_s": engine.typical_duration_s,
        "concurrency": engine.concurrency,
        "timeout_s": engine.timeout_s,
        "input_schema": engine.input_model.model_json_schema(),
        **_upstream(engine),
    }


def _upstream(engine: Engine) -> dict[str, Any]:
    """An upstream engine's provider and base URL (never its key)."""
    info = getattr(engine, "upstream", None)
    if info is None:
        return {}
    return {"upstream": {"provider": info.provider, "base_url": info.base_url}}
