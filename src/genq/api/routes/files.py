"""/v1/files (uploads) and /files/... (public output URLs)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from starlette.responses import FileResponse, JSONResponse, Response

from genq.api.deps import App, Caller
from genq.api.schemas import AUTH, BINARY, UPLOAD, FileOut, problems
from genq.errors import NotFound

router = APIRouter()


@router.post(
    "/v1/files",
    tags=["files"],
    status_code=201,
    responses={201: {"model": FileOut}, **problems(*AUTH, *UPLOAD)},
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
    responses={200: {"content": BINARY}, **problems(*AUTH, 404)},
    summary="An uploaded file's bytes",
)
async def get_file_content(file_id: str, genq: App, caller: Caller) -> Response:
    record = await genq.files.get(caller.account.id, file_id)
    return FileResponse(
        genq.storage.uploads / record.path, media_type=record.content_type, filename=record.filename
    )


@router.get(
    "/files/{job_id}/{token}/{filename}",
    tags=["public"],
    response_class=Response,
    responses={200: {"content": BINARY}, **problems(404)},
    summary="An output file (public, unguessable URL)",
)
async def public_file(job_id: str, token: str, filename: str, genq: App) -> Response:
    path = genq.storage.public_file(f"{job_id}/{token}/{filename}")
    if path is None:
        raise NotFound("no such file")
    return FileResponse(path, headers={"Cache-Control": "public, max-age=86400, immutable"})
