"""/v1/models: trainable models (create, upload images, train, read)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Request, UploadFile
from starlette.responses import JSONResponse, Response

from genq.api.deps import App, Caller, Creator, idempotent, json_body
from genq.api.schemas import (
    AUTH,
    BODY,
    IDEMPOTENCY_KEY,
    PROBLEMS,
    UPLOAD,
    FileOut,
    JobOut,
    ModelCreate,
    ModelList,
    ModelOut,
    ModelTrain,
    problems,
    request_body,
)

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.post(
    "",
    status_code=201,
    responses={201: {"model": ModelOut}, **problems(*AUTH, *BODY, 404, 409)},
    openapi_extra=request_body(ModelCreate, parameters=[IDEMPOTENCY_KEY]),
    summary="Create a trainable model",
)
async def create_model(request: Request, genq: App, caller: Caller) -> Response:
    async def create() -> Response:
        body = await json_body(request, ModelCreate, max_bytes=genq.settings.max_json_bytes)
        model = await genq.models.create(
            caller.account.id, name=body.name, engine=body.engine, metadata=body.metadata
        )
        return JSONResponse(genq.models.render(model, genq.settings.base_url), status_code=201)

    return await idempotent(request, caller, create)


@router.get("", responses={200: {"model": ModelList}, **PROBLEMS}, summary="List models")
async def list_models(genq: App, caller: Caller) -> Response:
    models = await genq.models.list(caller.account.id)
    data = [genq.models.render(m, genq.settings.base_url) for m in models]
    return JSONResponse({"object": "list", "data": data})


@router.get(
    "/{model_id}",
    responses={200: {"model": ModelOut}, **problems(*AUTH, 404)},
    summary="Get a model",
)
async def get_model(model_id: str, genq: App, caller: Caller) -> Response:
    model = await genq.models.get(caller.account.id, model_id)
    return JSONResponse(genq.models.render(model, genq.settings.base_url))


@router.post(
    "/{model_id}/images",
    status_code=201,
    responses={201: {"model": FileOut}, **problems(*AUTH, *UPLOAD, 404)},
    summary="Upload a training image to a model",
)
async def upload_model_image(
    model_id: str,
    genq: App,
    caller: Caller,
    file: Annotated[UploadFile, File(description="an image")],
) -> Response:
    await genq.models.get(caller.account.id, model_id)
    record = await genq.files.save(
        caller.account.id,
        file.file,
        filename=file.filename,
        content_type=file.content_type,
        model_id=model_id,
        purpose="training",
    )
    return JSONResponse(genq.files.render(record), status_code=201)


@router.post(
    "/{model_id}/train",
    status_code=202,
    responses={202: {"model": JobOut}, **problems(*AUTH, *BODY, 402, 404, 409)},
    openapi_extra=request_body(ModelTrain, required=False, parameters=[IDEMPOTENCY_KEY]),
    summary="Train a model",
)
async def train_model(model_id: str, request: Request, genq: App, caller: Creator) -> Response:
    """Starts the model's train job and answers with it; the model is `training`
    until the job ends, then `ready` (or `failed`). With no `input.images`, the images
    uploaded to the model are used."""

    async def train() -> Response:
        if await request.body():
            body = await json_body(request, ModelTrain, max_bytes=genq.settings.max_json_bytes)
        else:
            body = ModelTrain()
        job = await genq.models.train(caller.account, model_id, body.input)
        item = genq.jobs.entry(job)
        return Response(
            item.body,
            status_code=202,
            media_type="application/json",
            headers={"Location": f"/v1/jobs/{job.id}", "ETag": item.etag},
        )

    return await idempotent(request, caller, train)
