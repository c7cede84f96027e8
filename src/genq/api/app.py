"""`create_app(settings)`: the FastAPI application (canonical API, public files,
health and metrics), with a `Genq` started in its lifespan.

Every path answers `OPTIONS` with 204 and an `Allow` header listing all its methods,
and a method it does not have with 405 and the same `Allow` (RFC 9110; see
`problems.allowed_methods`). There is no CORS (the dashboard is served from the same
origin), so `OPTIONS` is no preflight: it is answered for every path alike and stays
out of the OpenAPI document, as protocol, not API."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from genq import __version__
from genq.api import compat, problems
from genq.api.front import Front, MeasuredFront
from genq.api.middleware import Guard
from genq.api.routes import (
    docs,
    engines,
    events,
    files,
    jobs,
    models,
    system,
    ui,
    upstreams,
    webhooks,
)
from genq.api.schemas import problem_response, request_schemas
from genq.api.streams import Feeds
from genq.core import Genq
from genq.settings import Settings
from genq.telemetry import tracing


def create_app(
    settings: Settings | None = None,
    *,
    genq: Genq | None = None,
    workers: bool = True,
    migrate: bool = True,
    hot_paths: bool = True,
    freeze_gc: bool = False,
) -> Front:
    """The ASGI app. With `workers`, in-process workers run jobs (`genq serve`);
    without, this is an API replica and `genq worker` processes run them. Without
    `hot_paths`, the reads `genq.api.front.Front` answers go through FastAPI's routes
    like everything else (slower; the reference the tests compare the fast path to).

    The app is `Front` in front of FastAPI (attributes not its own, like `openapi()` or
    `state`, are the FastAPI app's). `freeze_gc` (what `genq serve` does) moves
    everything alive once the server has started out of the garbage collector's way
    (`gc.freeze()`), so full collections under load only look at new objects."""
    settings = settings or (genq.settings if genq else Settings())
    core = genq or Genq(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await core.start(workers=workers, migrate=migrate)
        if freeze_gc:
            gc.freeze()
        try:
            yield
        finally:
            await core.stop()

    app = FastAPI(
        title="genq",
        version=__version__,
        description="Self-hosted server for asynchronous generation jobs.",
        lifespan=lifespan,
        docs_url=None,  # genq.api.routes.docs serves them from the package's files
        redoc_url=None,
    )
    app.state.genq = core
    problems.install(app, compat.error_renderers())
    for module in (jobs, events, files, engines, models, system, webhooks, upstreams, ui, docs):
        app.include_router(module.router)
    for router in compat.routers():
        app.include_router(router)
    document(app)
    core.webhooks.formats.update(compat.webhook_formats())
    core.webhooks.signers.update(compat.webhook_signers(core))
    app.add_middleware(
        Guard,
        json_bytes=settings.max_json_bytes,
        upload_bytes=settings.max_upload_bytes,
        grace_s=settings.body_grace_s,
        faces=compat.error_renderers(),
    )
    app.add_middleware(compat.Segments, segments=compat.base_segments())
    feeds = Feeds(core.jobs, core.bus, settings.sse_keepalive_s)
    app.state.feeds = feeds
    core.metrics.job_streams = feeds.__len__
    faces = compat.fast_reads() if hot_paths else None
    front = (
        MeasuredFront(app, core, feeds, faces, metrics=core.metrics)
        if settings.metrics_http
        else Front(app, core, feeds, faces)
    )
    return tracing.instrument_app(front)  # (itself unless tracing is on)


def document(app: FastAPI) -> None:
    """`app.openapi()` with the request models of the routes that read their bodies
    themselves (`genq.api.schemas.request_body`) in components/schemas, and without
    FastAPI's default 422 `HTTPValidationError`: genq answers a request that fails
    validation with problem+json 422 (`problems.install`), a face with its own 400."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = build()
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(request_schemas())
            for path, operations in doc["paths"].items():
                for operation in operations.values():
                    responses = operation["responses"]
                    if "HTTPValidationError" not in str(responses.get("422", "")):
                        continue
                    if path.startswith("/compat/"):
                        del responses["422"]
                    else:
                        responses["422"] = problem_response(422, "Invalid input")
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
        return app.openapi_schema or build()

    app.openapi = openapi  # type: ignore[method-assign]
