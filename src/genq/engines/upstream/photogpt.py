"""PhotoGPT (https://developer.photogptai.com/api, seed 002): images, videos and trained
identity models.

Every request carries `Authorization: Bearer <key>` and `API-Version: 1`; every answer
is wrapped as `{"result": ...}`.

Engines:
- `photogpt/image`: `POST /images/generation` `{prompt, modelID?, preset?, inputImageId?,
  width?, height?, aspectRatio?, numImages?, steps?, seed?, enhanceFace?}` -> `jobId`.
  `modelID` is either a model trained through `photogpt/train` (the genq input names
  the genq model in `model_id`; its artifact holds the PhotoGPT model id) or one of
  PhotoGPT's public image models (`base_model`, e.g. `gpt-image-2`).
- `photogpt/upscale`: `POST /images/upscaling` `{imageID}` -> `jobId`.
- `photogpt/video`: `POST /videos/generation` `{modelID (a video model name), prompt,
  numVideos?, referenceImages?}` -> `jobId`.
- `photogpt/train`: `POST /models` `{name, age?, gender?, ethnicity?, eyeColor?}` ->
  `id`; each training picture is uploaded to it; `GET /models/{id}/train` starts
  training (it answers a success string, no job id). The upstream id is
  `model:<id>`; the job is tracked with `GET /models/{id}` until `ready`, and ends with
  the artifact `{"provider": "photogpt", "model_id": <id>}` (kept by genq as the trained
  model's `weights`).

Uploads: PhotoGPT documents `POST /images/upload` (multipart: `file`, and `data` =
`{"modelID", "type": "modelInput"}`). genq's compat face takes them at
`POST /models/{id}/images` instead; when `/images/upload` is not there (404/405) the
upload goes to that route, and the provider remembers which one answered.

Jobs (`GET /jobs/{id}`): `created|queued` -> queued, `running` -> running, `success` ->
succeeded (outputs from `images[{id,url}]` / `videos[{id,url}]`), `failed` -> failed
(its `error`). Models (`GET /models/{id}`): `new|created` -> queued, `training` ->
running, `ready` -> succeeded, `failed` -> failed, `deleted` -> failed (not found).
The documented polling cadence is 5 s for jobs and 5 min for training.

Errors: PhotoGPT answers `{"err", "message", "result": null, "status": "NOK"}` (genq's
face `{"error": {"code", "message"}}`); both are read. No cancel endpoint is
documented, and no way to find a job by a client reference: a create whose answer is
lost cannot be looked up. PhotoGPT documents no Idempotency-Key; the gateway's key is
sent when it gives one (genq's face honours it). With a key, a training create reads the
model back first, so a replayed `POST /models` whose model already trains or is ready is
neither fed nor started again; `/train` answering 409 (already training) is accepted.
A training model's name defaults to `genq <job id>`, so it can be found by hand.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Final, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from genq.engines.contract import FileRef, ModelRef
from genq.engines.upstream.base import (
    INSUFFICIENT,
    NOT_FOUND,
    UNAUTHORIZED,
    UNAVAILABLE,
    Call,
    Created,
    EngineSpec,
    Provider,
    Remote,
    Snapshot,
    State,
    UpstreamError,
    error_by_status,
    message_of,
)

API_VERSION: Final = "1"
CHECK_JOB: Final = "job_00000000000000000000000000"  # no such job: 404 to a good key
MODEL_PREFIX: Final = "model:"  # upstream ids of training jobs
JOB_STATES: Final[dict[str, State]] = {
    "created": "queued",
    "queued": "queued",
    "running": "running",
    "success": "succeeded",
    "failed": "failed",
}
MODEL_STATES: Final[dict[str, State]] = {
    "new": "queued",
    "created": "queued",
    "training": "running",
    "ready": "succeeded",
    "failed": "failed",
    "deleted": "failed",
}
# the documented upload route, and genq's face's route (see the module docstring)
UPLOAD: Final = "/images/upload"
FACE_UPLOAD: Final = "/models/{id}/images"
_MAGIC: Final = (
    (b"\x89PNG\r\n\x1a\n", "image/png", ".png"),
    (b"\xff\xd8\xff", "image/jpeg", ".jpg"),
    (b"GIF8", "image/gif", ".gif"),
)

Seed = Annotated[
    int | None, Field(default=None, ge=0, le=2**32 - 1, description="Seed for repeatable outputs.")
]
Prompt = Annotated[str, Field(min_length=1, max_length=2000)]
# an id PhotoGPT gave (an image, a public model): passed on as is
UpstreamName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S+$")]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageInput(_Input):
    prompt: Prompt = Field(description="Text prompt for the generated image.")
    model_id: ModelRef | None = Field(
        default=None,
        description="A genq model trained with photogpt/train: identity-consistent pictures.",
    )
    base_model: UpstreamName | None = Field(
        default=None,
        description="A public PhotoGPT image model instead (e.g. gpt-image-2, a NanoBanana "
        "or Seedream id); not with model_id.",
    )
    preset: str | None = Field(
        default=None, min_length=1, max_length=100, description="A preset tag (GET /presets)."
    )
    input_image_id: UpstreamName | None = Field(
        default=None,
        description="A PhotoGPT image id (an images[].id of an earlier PhotoGPT job, or an "
        "uploaded reference image) for reference workflows.",
    )
    width: int | None = Field(default=None, ge=64, le=4096, description="Width in pixels.")
    height: int | None = Field(default=None, ge=64, le=4096, description="Height in pixels.")
    aspect_ratio: str | None = Field(
        default=None,
        pattern=r"^[1-9][0-9]?:[1-9][0-9]?$",
        description="Aspect ratio such as 1:1 or 3:4 (instead of width/height).",
    )
    num_images: int = Field(default=1, ge=1, le=4, description="Number of images (1-4).")
    steps: int | None = Field(default=None, ge=1, le=200, description="Generation step count.")
    seed: Seed = None
    enhance_face: bool | None = Field(
        default=None, description="Face enhancement for portrait workflows."
    )

    @model_validator(mode="after")
    def _one_model_one_size(self) -> ImageInput:
        if self.model_id is not None and self.base_model is not None:
            raise ValueError("give model_id (a trained model) or base_model, not both")
        if self.aspect_ratio is not None and (self.width is not None or self.height is not None):
            raise ValueError("give width/height or aspect_ratio, not both")
        return self


class UpscaleInput(_Input):
    image_id: UpstreamName = Field(
        description="The PhotoGPT image to upscale: an images[].id of an earlier PhotoGPT job."
    )


class TrainInput(_Input):
    images: list[FileRef] = Field(
        min_length=1,
        max_length=20,
        description="1 to 20 pictures of one person (file ids; jpg, png, webp or heic).",
    )
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The model's name at PhotoGPT (default: genq and the job id).",
    )
    age: int | None = Field(default=None, ge=1, le=120, description="Age of the person.")
    gender: Literal["Male", "Female"] | None = Field(default=None, description="Male or Female.")
    ethnicity: str | None = Field(default=None, min_length=1, max_length=100)
    eye_color: str | None = Field(default=None, min_length=1, max_length=50)


def video_input(default_model: str | None) -> type[BaseModel]:
    """The video engine's input: `model` is required unless the operator configured a
    default video model (option `video_model`)."""
    model_field: Any = (
        Field(default=default_model, description=_VIDEO_MODEL)
        if default_model
        else Field(description=_VIDEO_MODEL)
    )
    built: type[BaseModel] = create_model(
        "PhotoGPTVideoInput",
        __base__=_Input,
        model=(UpstreamName, model_field),
        prompt=(Prompt, Field(description="What the video shows.")),
        num_videos=(int, Field(default=1, ge=1, le=4, description="Number of videos (1-4).")),
        reference_image_ids=(
            list[UpstreamName] | None,
            Field(
                default=None,
                max_length=4,
                description="PhotoGPT image ids (images[].id of earlier jobs) to animate "
                "or follow.",
            ),
        ),
    )
    return built


_VIDEO_MODEL: Final = "The PhotoGPT video model to use (its name, sent as modelID)."


def _result(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        raise UpstreamError(
            UNAVAILABLE, f"PhotoGPT answered {response.status_code} without JSON"
        ) from None
    if not isinstance(body, dict) or "result" not in body:
        raise UpstreamError(UNAVAILABLE, "PhotoGPT answered without a result")
    return body["result"]


def _field(result: Any, name: str) -> str:
    value = result.get(name) if isinstance(result, dict) else None
    if not isinstance(value, str | int) or isinstance(value, bool) or not str(value):
        raise UpstreamError(UNAVAILABLE, f"PhotoGPT answered without {name}")
    return str(value)


def _sniff(blob: bytes) -> tuple[str, str]:
    for magic, ctype, ext in _MAGIC:
        if blob.startswith(magic):
            return ctype, ext
    if blob[:4] == b"RIFF" and blob[8:12] == b"WEBP":
        return "image/webp", ".webp"
    if blob[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1"):
        return "image/heic", ".heic"
    return "application/octet-stream", ""


class PhotoGPT(Provider):
    name: ClassVar[str] = "photogpt"
    title: ClassVar[str] = "PhotoGPT"
    callbacks: ClassVar[bool] = False
    cancellable: ClassVar[bool] = False  # no cancel endpoint is documented
    default_max_jobs: ClassVar[int] = 1000
    default_rate_per_min: ClassVar[int | None] = None  # none documented

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self._upload: str | None = None  # the upload route that answered

    def engines(self) -> list[EngineSpec]:
        video_model = self.options.get("video_model")
        return [
            EngineSpec(
                what="image",
                task="text2image",
                input_model=ImageInput,
                media=("image",),
                description="PhotoGPT image generation, with a trained model or a public one.",
                cost=None,
                typical_duration_s=30.0,
                poll_s=5.0,
            ),
            EngineSpec(
                what="upscale",
                task="upscale",
                input_model=UpscaleInput,
                media=("image",),
                description="PhotoGPT upscaling of an image it made.",
                cost=None,
                typical_duration_s=30.0,
                poll_s=5.0,
            ),
            EngineSpec(
                what="video",
                task="text2video",
                input_model=video_input(video_model if isinstance(video_model, str) else None),
                media=("video",),
                description="PhotoGPT video generation with a named video model.",
                cost=None,
                typical_duration_s=180.0,
                poll_s=5.0,
            ),
            EngineSpec(
                what="train",
                task="train",
                input_model=TrainInput,
                media=("other",),
                description="Trains a PhotoGPT identity model on pictures of one person "
                "(20-25 minutes); use it in photogpt/image through model_id.",
                cost=None,
                typical_duration_s=1350.0,
                poll_s=300.0,
            ),
        ]

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}", "API-Version": API_VERSION}

    # -- create ------------------------------------------------------------------------

    async def create(
        self,
        call: Call,
        what: str,
        data: BaseModel,
        *,
        reference: str,
        callback_url: str | None,
        idempotency_key: str | None,
    ) -> Created:
        if what == "train":
            assert isinstance(data, TrainInput)
            return await self._train(call, data, reference, idempotency_key)
        if what == "image":
            assert isinstance(data, ImageInput)
            path, body = "/images/generation", self._image_body(call, data)
        elif what == "upscale":
            assert isinstance(data, UpscaleInput)
            path, body = "/images/upscaling", {"imageID": data.image_id}
        elif what == "video":
            path, body = "/videos/generation", self._video_body(data)
        else:
            raise UpstreamError("invalid_input", f"PhotoGPT has no engine {what!r}")
        response = await call.request("POST", path, json=body, idempotency_key=idempotency_key)
        job_id = _field(_result(response), "jobId")
        return Created(job_id, Snapshot(state="queued", message="created"))

    def _image_body(self, call: Call, data: ImageInput) -> dict[str, Any]:
        body: dict[str, Any] = {"prompt": data.prompt, "numImages": data.num_images}
        if data.model_id is not None:
            body["modelID"] = self._trained_model(call, data.model_id)
        elif data.base_model is not None:
            body["modelID"] = data.base_model
        for key, value in (
            ("preset", data.preset),
            ("inputImageId", data.input_image_id),
            ("width", data.width),
            ("height", data.height),
            ("aspectRatio", data.aspect_ratio),
            ("steps", data.steps),
            ("seed", data.seed),
            ("enhanceFace", data.enhance_face),
        ):
            if value is not None:
                body[key] = value
        return body

    def _video_body(self, data: BaseModel) -> dict[str, Any]:
        fields = data.model_dump()
        body: dict[str, Any] = {
            "modelID": fields["model"],
            "prompt": fields["prompt"],
            "numVideos": fields["num_videos"],
        }
        if fields.get("reference_image_ids"):
            body["referenceImages"] = fields["reference_image_ids"]
        return body

    def _trained_model(self, call: Call, model_id: str) -> str:
        """The PhotoGPT model id in the artifact of the genq model `model_id`."""
        path = call.model_artifact
        if path is None:
            raise UpstreamError("invalid_input", f"{model_id}: the model has no artifact")
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UpstreamError(
                "invalid_input", f"{model_id}: its artifact is not readable JSON"
            ) from exc
        upstream = doc.get("model_id") if isinstance(doc, dict) else None
        if not isinstance(doc, dict) or doc.get("provider") != self.name or not upstream:
            raise UpstreamError(
                "invalid_input", f"{model_id} is not a model trained with photogpt/train"
            )
        return str(upstream)

    async def _train(
        self, call: Call, data: TrainInput, reference: str, idempotency_key: str | None
    ) -> Created:
        body: dict[str, Any] = {"name": data.name or f"genq {reference}"}
        for key, value in (
            ("age", data.age),
            ("gender", data.gender),
            ("ethnicity", data.ethnicity),
            ("eyeColor", data.eye_color),
        ):
            if value is not None:
                body[key] = value
        response = await call.request("POST", "/models", json=body, idempotency_key=idempotency_key)
        model_id = _field(_result(response), "id")
        upstream_id = f"{MODEL_PREFIX}{model_id}"
        if idempotency_key is not None:
            # the answer may be a replay (a create retried after its answer was lost):
            # a model already training or trained is not fed nor started again
            model = _result(await call.request("GET", f"/models/{model_id}"))
            word = str(model.get("status") or "").lower() if isinstance(model, dict) else ""
            if word in ("training", "ready"):
                return Created(upstream_id)
        for i, ref in enumerate(data.images, start=1):
            await self._upload_image(call, model_id, ref, i)
        # 409: training already started (a retried create that got this far)
        await call.request("GET", f"/models/{model_id}/train", ok=(409,))
        return Created(upstream_id, Snapshot(state="queued", message="training"))

    async def _upload_image(self, call: Call, model_id: str, ref: str, index: int) -> None:
        blob = call.input_path(ref).read_bytes()
        ctype, ext = _sniff(blob)
        upload = {"file": (f"training_{index}{ext}", blob, ctype)}
        if self._upload in (None, UPLOAD):
            meta = json.dumps({"modelID": model_id, "type": "modelInput"})
            response = await call.request(
                "POST", UPLOAD, data={"data": meta}, files=upload, ok=(404, 405)
            )
            if response.status_code not in (404, 405):
                self._upload = UPLOAD
                return
        await call.request(
            "POST",
            FACE_UPLOAD.format(id=model_id),
            files={"image": upload["file"]},
        )
        self._upload = FACE_UPLOAD

    # -- status ------------------------------------------------------------------------

    async def status(self, call: Call, what: str, upstream_id: str) -> Snapshot:
        if what == "train" or upstream_id.startswith(MODEL_PREFIX):
            return await self._model_status(call, upstream_id.removeprefix(MODEL_PREFIX))
        response = await call.request("GET", f"/jobs/{upstream_id}")
        job = _result(response)
        if not isinstance(job, dict):
            raise UpstreamError(UNAVAILABLE, "PhotoGPT answered a job that is not an object")
        word = str(job.get("status") or "").lower()
        state = JOB_STATES.get(word, "running")  # an unknown word is not an end
        if state == "failed":
            error = job.get("error")
            return Snapshot(
                state="failed",
                message=word,
                error_message=str(error) if error else f"Job failed: {job.get('status')}",
            )
        if state != "succeeded":
            return Snapshot(state=state, message=word or None)
        outputs = [
            *self._remotes(job.get("images"), "image"),
            *self._remotes(job.get("videos"), "video"),
        ]
        return Snapshot(state="succeeded", progress=100.0, message=word, outputs=tuple(outputs))

    @staticmethod
    def _remotes(records: Any, kind: Literal["image", "video"]) -> list[Remote]:
        found: list[Remote] = []
        for record in records if isinstance(records, list) else []:
            if not isinstance(record, dict) or not isinstance(record.get("url"), str):
                continue
            meta = {"photogpt_id": str(record["id"])} if record.get("id") else {}
            found.append(
                Remote(name=f"{kind}_{len(found) + 1}", url=record["url"], kind=kind, meta=meta)
            )
        return found

    async def _model_status(self, call: Call, model_id: str) -> Snapshot:
        response = await call.request("GET", f"/models/{model_id}")
        model = _result(response)
        if not isinstance(model, dict):
            raise UpstreamError(UNAVAILABLE, "PhotoGPT answered a model that is not an object")
        word = str(model.get("status") or "").lower()
        state = MODEL_STATES.get(word, "running")
        if state == "succeeded":
            artifact = {"provider": self.name, "model_id": str(model.get("id") or model_id)}
            if model.get("name"):
                artifact["name"] = str(model["name"])
            return Snapshot(state="succeeded", progress=100.0, message=word, artifact=artifact)
        if state == "failed":
            error = model.get("error") or f"the model is {word}"
            return Snapshot(
                state="failed",
                message=word,
                error_code=NOT_FOUND if word == "deleted" else None,
                error_message=str(error),
            )
        return Snapshot(state=state, message=word or None)

    # -- the rest ----------------------------------------------------------------------

    async def check(self, call: Call) -> str:
        """`GET /models` (documented: the account's models). Where that list is not
        served (genq's face answers 405 before looking at the key), reading a job that
        does not exist tells a good key (404) from a bad one (401)."""
        response = await call.request("GET", "/models", ok=(404, 405))
        if response.status_code in (404, 405):
            await call.request("GET", f"/jobs/{CHECK_JOB}", ok=(400, 404))
            return f"{self.title}: the key is accepted"
        try:
            models = response.json().get("result")
        except (ValueError, AttributeError):
            models = None
        count = f", {len(models)} models" if isinstance(models, list) else ""
        return f"{self.title}: the key is accepted{count}"

    def error_of(self, response: httpx.Response) -> UpstreamError:
        status = response.status_code
        word = _error_word(response)
        message = message_of(response)
        if message == word or not message:
            message = word or f"HTTP {status}"
        error = error_by_status(response, f"{self.title}: {message}")
        if status in (404, 410) or word in ("not_found", "notfound"):
            error.code = NOT_FOUND
        elif status == 409 and error.retry_after is not None:
            error.code = UNAVAILABLE  # a twin request still in flight: try again
        elif word in ("insufficient_credits", "insufficient_balance", "no_credits"):
            error.code = INSUFFICIENT
        elif word in ("unauthorized", "invalid_key", "forbidden"):
            error.code = UNAUTHORIZED
        return error


def _error_word(response: httpx.Response) -> str:
    """The error code of a PhotoGPT answer (`err`) or genq's face (`error.code`)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, dict):
        error = error.get("code")
    value = error if isinstance(error, str) and error else body.get("err")
    return str(value).lower() if isinstance(value, str) else ""


PROVIDER = PhotoGPT
