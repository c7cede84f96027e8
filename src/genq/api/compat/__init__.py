"""Provider-compatible faces: `/compat/<provider>` speaks a seed service's wire format.

Each face is one module: a translation table plus a router, calling the canonical
service layer; no face keeps state of its own. Adding a face means adding a module
and naming it in FACES. A module's `BASE_SEGMENTS` (e.g. `("v2",)`) are segments its
clients keep at the end of their base URL: `/compat/<name>/v2/...` is served as
`/compat/<name>/...` (`Segments` before the routes, and the fast reads under both).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from genq.api.front import FastRead
from genq.errors import GenqError

if TYPE_CHECKING:
    from genq.core import Genq
    from genq.webhooks import Signer

FACES: tuple[str, ...] = (
    "masterpiecex",
    "useapi",
    "photogpt",
    "vivix",
    "replicate",
    "fal",
    "openai",
    "runway",
)
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
        module = importlib.import_module(f"genq.api.compat.{name}")
        own: list[FastRead] = getattr(module, "FAST_READS", [])
        reads += own
        prefix = f"/compat/{name}"
        for segment in getattr(module, "BASE_SEGMENTS", ()):
            reads += [
                dataclasses.replace(r, path=f"{prefix}/{segment}{r.path[len(prefix) :]}")
                for r in own
            ]
    return reads


def base_segments() -> dict[str, str]:
    """`/compat/<name>/<segment>` -> `/compat/<name>`, for each face's `BASE_SEGMENTS`."""
    return {
        f"/compat/{name}/{segment}": f"/compat/{name}"
        for name in FACES
        for segment in getattr(
            importlib.import_module(f"genq.api.compat.{name}"), "BASE_SEGMENTS", ()
        )
    }


class Segments:
    """ASGI middleware: a request under `/compat/<name>/<segment>/` goes on as the same
    request without the segment (see `base_segments`)."""

    def __init__(self, app: ASGIApp, segments: dict[str, str]) -> None:
        self.app = app
        self.segments = [(k, v, k.encode(), v.encode()) for k, v in segments.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            for alias, target, raw_alias, raw_target in self.segments:
                if path == alias or path.startswith(alias + "/"):
                    inner = dict(scope, path=target + path[len(alias) :])
                    raw = inner.get("raw_path")
                    if isinstance(raw, bytes) and raw.startswith(raw_alias):
                        inner["raw_path"] = raw_target + raw[len(raw_alias) :]
                    await self.app(inner, receive, send)
                    if "route" in inner:  # the matched route, for whoever is outside
                        scope["route"] = inner["route"]
                    return
        await self.app(scope, receive, send)


def webhook_formats() -> dict[str, Formatter]:
    """Faces whose callbacks carry the provider's own JSON (a module-level
    `WEBHOOK_FORMAT` function turning a canonical job into the provider's body)."""
    formats: dict[str, Formatter] = {}
    for name in FACES:
        module = importlib.import_module(f"genq.api.compat.{name}")
        if hasattr(module, "WEBHOOK_FORMAT"):
            formats[name] = module.WEBHOOK_FORMAT
    return formats


def webhook_signers(core: Genq) -> dict[str, Signer]:
    """Faces whose callbacks are signed the provider's way (a module-level
    `WEBHOOK_SIGNER(core, job, account_id, body, now)` returning the headers), bound
    to the server's core (its secrets)."""
    signers: dict[str, Signer] = {}
    for name in FACES:
        module = importlib.import_module(f"genq.api.compat.{name}")
        if hasattr(module, "WEBHOOK_SIGNER"):
            signers[name] = functools.partial(module.WEBHOOK_SIGNER, core)
    return signers
