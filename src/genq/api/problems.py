"""The one mapping from errors to RFC 9457 problem+json responses."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from genq.errors import GenqError, MethodNotAllowed, NotFound

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"
_HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    413: ("too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    422: ("invalid_input", "Invalid input"),
}


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {
        "type": f"https://genq.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM, headers=headers)


def from_error(exc: GenqError, instance: str | None = None) -> Response:
    extra = dict(exc.extra)
    headers = extra.pop("headers", None)
    return problem(
        exc.status, exc.code, exc.title, exc.detail, instance=instance, headers=headers, **extra
    )


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request, named: str = "") -> str:
    """`Allow` for the request's path: every method of every route of the app that
    takes the path (Starlette's 405 names those of the first route whose path matched,
    `named`; files mounted under a path name theirs), and OPTIONS."""
    scope, routes = request.scope, request.app.router.routes
    allowed = {m.strip().upper() for m in named.split(",") if m.strip()} | {"OPTIONS"}
    allowed.update(
        m
        for m in METHODS
        if m not in allowed
        and any(r.matches({**scope, "method": m})[0] == Match.FULL for r in routes)
    )
    return ", ".join(m for m in METHODS if m in allowed)


def face_renderer(
    faces: Mapping[str, Callable[[GenqError], Response]], path: str
) -> Callable[[GenqError], Response] | None:
    for prefix, render in faces.items():
        if path == prefix or path.startswith(prefix + "/"):
            return render
    return None


def install(
    app: FastAPI, faces: Mapping[str, Callable[[GenqError], Response]] | None = None
) -> None:
    """The handlers of every error. `faces`: path prefix -> the renderer of a compat
    face's errors; the framework's own 404 and 405 under a prefix (no such route, an
    empty id, a wrong method) answer in that face's shape, not as problem+json."""

    async def on_genq(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GenqError)
        return from_error(exc, request.url.path)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {
                "field": ".".join(str(p) for p in err.get("loc", ()) if p != "body"),
                "message": err.get("msg", ""),
                "type": err.get("type", ""),
            }
            for err in exc.errors()
        ]
        return problem(
            422,
            "invalid_input",
            "Invalid input",
            "the request is not valid",
            instance=request.url.path,
            errors=errors,
        )

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # the path is there, the method is not
            headers["Allow"] = allowed_methods(request, headers.get("Allow", ""))
            if request.method == "OPTIONS":  # what it is for: 204 and Allow
                return Response(status_code=204, headers={"Allow": headers["Allow"]})
        render = None
        if exc.status_code in (404, 405):
            render = face_renderer(faces or {}, request.url.path)
        if render is not None:
            method, path = request.method, request.url.path
            if exc.status_code == 404:
                return render(NotFound(f"no such endpoint: {method} {path}"))
            return render(MethodNotAllowed(f"{path} does not take {method}", headers=headers))
        code, title = _HTTP_CODES.get(exc.status_code, ("http_error", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        return problem(
            exc.status_code, code, title, detail, instance=request.url.path, headers=headers
        )

    async def on_crash(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(
            500,
            "internal",
            "Internal error",
            "the server failed; it was logged",
            instance=request.url.path,
        )

    app.add_exception_handler(GenqError, on_genq)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)
