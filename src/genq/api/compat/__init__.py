"""Provider-compatible faces: `/compat/<provider>` speaks a seed service's wire format.

Each face is one module: a translation table plus a router, calling the canonical
service layer; no face keeps state of its own. Adding a face means adding a module
and naming it in FACES.
"""

from __future__ import annotations

import importlib

from fastapi import APIRouter

FACES: tuple[str, ...] = ()


def routers() -> list[APIRouter]:
    return [importlib.import_module(f"genq.api.compat.{name}").router for name in FACES]
