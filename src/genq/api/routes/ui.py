"""The web dashboard: static files (no build step) served at `/ui`, with a strict
Content-Security-Policy. The page signs in with an API key kept in sessionStorage
and talks to the canonical `/v1` API like any other client."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

UI_DIR = Path(__file__).resolve().parents[2] / "static" / "ui"

# Same origin only; the page itself has no inline script or style. For the vendored
# model-viewer: three.js decodes textures from blob:/data: URLs and may start blob:
# workers, its mesh decoder is WebAssembly ('wasm-unsafe-eval' allows compiling wasm,
# not JS eval), and its shadow DOM has one <style> element, allowed by its hash
# (recompute it when updating vendor/model-viewer.min.js; tests/e2e checks).
MODEL_VIEWER_STYLE = "'sha256-PXtZZkJMMyc18o/DN1ZEFOJ2qEGq95IQbVaJFMOXOb0='"
CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self' 'wasm-unsafe-eval'",
        f"style-src 'self' {MODEL_VIEWER_STYLE}",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "connect-src 'self' data: blob:",
        "worker-src 'self' blob:",
        "font-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",  # revalidate (ETag) so an upgrade shows at once
}


class Files(StaticFiles):
    """StaticFiles whose 405 says what the files answer (`Allow`)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(status_code=405, headers={"Allow": "GET, HEAD"})
        return await super().get_response(path, scope)


class UIFiles(Files):
    """The dashboard's files, with its security headers on every answer."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


router = APIRouter(include_in_schema=False)


@router.get("/", include_in_schema=False)
async def root() -> Response:
    """A browser opening the server lands on the dashboard."""
    return RedirectResponse("ui/", status_code=307)  # relative: works under a path prefix


router.mount("/ui", UIFiles(directory=UI_DIR, html=True, check_dir=False), name="ui")
