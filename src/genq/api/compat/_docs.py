"""The faces in the OpenAPI document: each face's error body (what its
`error_response` renders), the responses of its routes (its own error shape, the
body limits `genq.api.middleware.Guard` enforces before any route included), and
request bodies that are forms or raw bytes."""

from __future__ import annotations

from typing import Any, Union, get_args

from pydantic import BaseModel, Field, create_model
from pydantic.fields import FieldInfo

_WHY: dict[int, str] = {
    400: "Bad request (invalid input, unknown model or function)",
    401: "No valid API key",
    402: "Not enough credits",
    403: "Another account's resource",
    404: "Not found",
    408: "The body arrived too slowly",
    409: "Conflict with the resource's state",
    410: "Expired",
    413: "The body is too large",
    429: "Rate limited (see Retry-After)",
}


def errors(model: type[BaseModel], *statuses: int) -> dict[int | str, dict[str, Any]]:
    """A face route's `responses=`: these statuses in the face's error shape `model`."""
    return {s: {"model": model, "description": _WHY[s]} for s in sorted(statuses)}


class MasterpiecexError(BaseModel):
    error: str = Field(examples=["bad_request"])
    message: str
    errors: list[dict[str, Any]] | None = None
    balance: int | None = None
    needed: int | None = None


class UseapiError(BaseModel):
    error: str
    code: int
    runningJobs: list[str] | None = None


class PhotogptErrorDetail(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None
    balance: int | None = None
    needed: int | None = None


class PhotogptError(BaseModel):
    error: PhotogptErrorDetail


class VivixError(BaseModel):
    error: str = Field(examples=["INVALID_REQUEST"])
    message: str
    details: list[dict[str, Any]] | None = None
    balance: int | None = None
    needed: int | None = None


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # null, which the form field cannot be


def form_of(model: type[BaseModel], *files: str) -> type[BaseModel]:
    """`model` as multipart/form-data: the fields `files` are file parts, and a field
    that may be null in JSON is one a form leaves out (a form has no null)."""
    fields: dict[str, Any] = {name: (bytes, ...) for name in files}
    for name, info in model.model_fields.items():
        if name in files or info.is_required():
            continue
        args = [a for a in get_args(info.annotation) if a is not type(None)]
        if len(args) < len(get_args(info.annotation)):  # Optional[...]
            kept = Union[tuple(args)] if len(args) > 1 else args[0]  # noqa: UP007
            field = FieldInfo.merge_field_infos(
                info, annotation=kept, json_schema_extra=_no_default
            )
            fields[name] = (kept, field)
    name = f"{model.__name__}Form"
    return create_model(name, __base__=model, __module__=model.__module__, **fields)


class PhotogptImagesForm(BaseModel):
    """Training images as multipart/form-data (any field name; `images` here)."""

    images: list[bytes] = Field(min_length=1)


BYTES: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            t: {"schema": {"type": "string", "format": "binary"}}
            for t in ("application/octet-stream", "image/*")
        },
    }
}
"""A raw body (an upload to a signed URL)."""


class ReplicateError(BaseModel):
    title: str = Field(examples=["Input validation failed"])
    detail: str
    status: int
    invalid_fields: list[dict[str, Any]] | None = None


class RunwayError(BaseModel):
    error: str = Field(examples=["Validation of body failed"])
    issues: list[dict[str, Any]] | None = None


class FalError(BaseModel):
    detail: str | list[dict[str, Any]] | None = Field(
        default=None, examples=["Request is still in progress"]
    )
    error_type: str | None = None
    status: str | None = Field(default=None, examples=["ALREADY_COMPLETED"])  # cancel's answers


class OpenaiErrorDetail(BaseModel):
    message: str
    type: str = Field(examples=["invalid_request_error"])
    param: str | None = None
    code: str | None = None


class OpenaiError(BaseModel):
    error: OpenaiErrorDetail
