"""`create_app(settings)`: the FastAPI application (canonical API, public files,
health and metrics), with a `Genq` started in its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from genq import __version__
from genq.api import compat, problems
from genq.api.middleware import BodyLimit, RateLimitHeaders
from genq.api.routes import engines, events, files, jobs, models, system, ui, webhooks
from genq.core import Genq
from genq.settings import Settings


def create_app(
    settings: Settings | None = None,
    *,
    genq: Genq | None = None,
    workers: bool = True,
    migrate: bool = True,
) -> FastAPI:
    """The ASGI app. With `workers`, in-process workers run jobs (`genq serve`);
    without, this is an API replica and `genq worker` processes run them."""
    settings = settings or (genq.settings if genq else Settings())
    core = genq or Genq(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await core.start(workers=workers, migrate=migrate)
        try:
            yield
        finally:
            await core.stop()

    app = FastAPI(
        title="genq",
        version=__version__,
        description="Self-hosted server for asynchronous generation jobs.",
        lifespan=lifespan,
    )
    app.state.genq = core
    problems.install(app)
    for module in (jobs, events, files, engines, models, system, webhooks, ui):
        app.include_router(module.router)
    for router in compat.routers():
        app.include_router(router)
    core.webhooks.formats.update(compat.webhook_formats())
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(BodyLimit, max_bytes=max(settings.max_upload_bytes, settings.max_json_bytes))
    return app
