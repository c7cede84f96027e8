"""/v1/files (uploads) and /files/... (public output URLs)."""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from starlette.responses import (
    FileResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from genq.api.deps import App, Caller
from genq.api.schemas import AUTH, BINARY, UPLOAD, FileOut, problems
from genq.core import Genq
from genq.errors import NotFound, StorageUnavailable

router = APIRouter()


@router.post(
    "/v1/files",
    tags=["files"],
    status_code=201,
    responses={201: {"model": FileOut}, **problems(*AUTH, *UPLOAD, 503)},
    summary="Upload an input file",
)
async def upload_file(
    genq: App,
    caller: Caller,
    file: Annotated[UploadFile, File(description="the file")],
    purpose: Annotated[str | None, Form()] = None,
) -> Response:
    """Multipart upload (field `file`). Returns the file record; use its id as an
    engine input (e.g. `demo/upscale`'s `image`)."""
    record = await genq.files.save(
        caller.account.id,
        file.file,
        filename=file.filename,
        content_type=file.content_type,
        purpose=purpose,
    )
    return JSONResponse(genq.files.render(record), status_code=201)


@router.get(
    "/v1/files/{file_id}",
    tags=["files"],
    responses={200: {"model": FileOut}, **problems(*AUTH, 404)},
    summary="An uploaded file's record",
)
async def get_file(file_id: str, genq: App, caller: Caller) -> Response:
    return JSONResponse(genq.files.render(await genq.files.get(caller.account.id, file_id)))


@router.get(
    "/v1/files/{file_id}/content",
    tags=["files"],
    response_class=Response,
    responses={
        200: {"content": BINARY},
        206: {"description": "the requested range"},
        307: {"description": "object store: a presigned URL of the bytes"},
        416: {"description": "the range starts past the end"},
        **problems(*AUTH, 404, 503),
    },
    summary="An uploaded file's bytes",
)
async def get_file_content(file_id: str, request: Request, genq: App, caller: Caller) -> Response:
    record = await genq.files.get(caller.account.id, file_id)
    key = f"uploads/{record.path}"
    if genq.storage.local:
        path = genq.storage.local_file(key)
        if path is None:
            raise NotFound("no such file")
        return FileResponse(path, media_type=record.content_type, filename=record.filename)
    disposition = f'attachment; filename="{record.filename}"'
    return await serve_object(genq, request, key, record.content_type, disposition, {})


@router.get(
    "/files/{job_id}/{token}/{filename}",
    tags=["public"],
    response_class=Response,
    responses={
        200: {"content": BINARY},
        206: {"description": "the requested range"},
        307: {"description": "object store: a presigned URL of the bytes"},
        416: {"description": "the range starts past the end"},
        **problems(404, 503),
    },
    summary="An output file (public, unguessable URL)",
)
async def public_file(
    job_id: str, token: str, filename: str, request: Request, genq: App
) -> Response:
    headers = {"Cache-Control": "public, max-age=86400, immutable"}
    if genq.storage.local:
        path = genq.storage.public_file(f"{job_id}/{token}/{filename}")
        if path is None:
            raise NotFound("no such file")
        return FileResponse(path, headers=headers)
    key = genq.storage.public_key(f"{job_id}/{token}/{filename}")
    if key is None:
        raise NotFound("no such file")
    ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return await serve_object(genq, request, key, ctype, None, headers)


# -- objects in an object store ---------------------------------------------------------


async def serve_object(
    genq: Genq,
    request: Request,
    key: str,
    content_type: str,
    disposition: str | None,
    headers: dict[str, str],
) -> Response:
    """A 307 to a presigned URL (the store answers Range itself), or with
    GENQ_STORAGE_PROXY the bytes streamed through genq: 206 for a Range (of several
    ranges, the first is answered), 416 past the end. 503 when the store is down."""
    backend = genq.storage.backend
    info = await backend.head(key)  # 404 for a deleted job's file; 503 when down
    if info is None:
        raise NotFound("no such file")
    if not genq.settings.storage_proxy:
        try:
            url = await backend.sign(key, genq.settings.storage_url_ttl_s)
        except Exception as exc:
            raise StorageUnavailable("could not sign a download URL") from exc
        return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
    size = info.size
    out = {**headers, "Accept-Ranges": "bytes"}
    if disposition:
        out["Content-Disposition"] = disposition
    media = info.content_type or content_type
    wanted = parse_range(request.headers.get("range"), size)
    if isinstance(wanted, str):
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    if wanted is None:
        start, end, status = 0, size, 200
    else:
        (start, end), status = wanted, 206
        out["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    out["Content-Length"] = str(end - start)
    body = backend.stream(key, start, end) if end > start else _empty()
    return StreamingResponse(body, status_code=status, media_type=media, headers=out)


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """`Range: bytes=...` as [start, end), "unsatisfiable", or None (absent, not bytes,
    or malformed: the whole body). Only the first of several ranges is answered."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec:
        return None
    first, _, last = spec.split(",", 1)[0].strip().partition("-")
    try:
        if not first:  # the last N bytes
            n = int(last)
            if n <= 0:
                return "unsatisfiable"
            return (max(0, size - n), size) if size else "unsatisfiable"
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start < 0 or end <= start:
        return None if end <= start and last else "unsatisfiable"
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size)
