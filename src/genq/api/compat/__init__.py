"""Provider-compatible faces: `/compat/<provider>` speaks a seed service's wire format.

Each face is one module: a translation table plus a router, calling the canonical
service layer; no face keeps state of its own. Adding a face means adding a module
and naming it in FACES.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from genq.api.front import FastRead
from genq.errors import GenqError

FACES: tuple[str, ...] = ("masterpiecex", "useapi", "photogpt", "vivix")
Formatter = Callable[[dict[str, Any]], dict[str, Any]]


def routers() -> list[APIRouter]:
    return [importlib.import_module(f"genq.api.compat.{name}").router for name in FACES]


def error_renderers() -> dict[str, Callable[[GenqError], Response]]:
    """Each face's path prefix and the renderer of its errors (a module-level
    `error_response`), for the framework's own 404 and 405 under that prefix."""
    return {
        f"/compat/{name}": importlib.import_module(f"genq.api.compat.{name}").error_response
        for name in FACES
    }


def fast_reads() -> list[FastRead]:
    """The status reads the faces' clients poll, served before FastAPI's router (a
    module-level `FAST_READS` list of `genq.api.front.FastRead`)."""
    reads: list[FastRead] = []
    for name in FACES:
        reads += getattr(importlib.import_module(f"genq.api.compat.{name}"), "FAST_READS", [])
    return reads


def webhook_formats() -> dict[str, Formatter]:
    """Faces whose callbacks carry the provider's own JSON (a module-level
    `WEBHOOK_FORMAT` function turning a canonical job into the provider's body)."""
    formats: dict[str, Formatter] = {}
    for name in FACES:
        module = importlib.import_module(f"genq.api.compat.{name}")
        if hasattr(module, "WEBHOOK_FORMAT"):
            formats[name] = module.WEBHOOK_FORMAT
    return formats
