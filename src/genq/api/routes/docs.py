"""/docs (Swagger UI) and /redoc (ReDoc) on the server's own files: the pages and
every script, style sheet and icon they load come from the installed
`fastapi-standalone-docs` package (the swagger-ui-dist and redoc bundles, with their
licences), so the docs work with no internet (FastAPI's defaults load them from a
CDN)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from starlette.responses import HTMLResponse

from genq.api.routes.ui import Files

ASSETS = Path(str(files("fastapi_standalone_docs"))) / "static"
OPENAPI_URL = "/openapi.json"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"

router = APIRouter(include_in_schema=False)


@router.get("/docs", include_in_schema=False)
async def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}{OPENAPI_URL}",
        title="genq - Swagger UI",
        oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_URL}",
        swagger_js_url=f"{root}/docs/swagger/swagger-ui-bundle.js",
        swagger_css_url=f"{root}/docs/swagger/swagger-ui.css",
        swagger_favicon_url=f"{root}/docs/fastapi/favicon.png",
    )


@router.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc", include_in_schema=False)
async def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_redoc_html(
        openapi_url=f"{root}{OPENAPI_URL}",
        title="genq - ReDoc",
        redoc_js_url=f"{root}/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{root}/docs/fastapi/favicon.png",
        with_google_fonts=False,
    )


# the package's bundle of redoc asks for its logo at `<page path>/logo-mini.svg`
router.mount("/redoc", Files(directory=ASSETS / "redoc"), name="redoc-assets")
router.mount("/docs", Files(directory=ASSETS), name="docs-assets")
