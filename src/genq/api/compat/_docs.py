"""The faces in the OpenAPI document: each face's error body (what its
`error_response` renders), the responses of its routes (its own error shape, and
problem+json for the body limits `genq.api.middleware.Guard` enforces before any
route), and request bodies that are forms or raw bytes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, create_model

from genq.api.schemas import problem_response

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
BODY = (408, 413)  # a request with a body (answered by Guard in problem+json)


def errors(model: type[BaseModel], *statuses: int) -> dict[int | str, dict[str, Any]]:
    """A face route's `responses=`: these statuses in the face's error shape `model`
    (408 and 413 in problem+json)."""
    return {
        s: (problem_response(s, _WHY[s]) if s in BODY else {"model": model, "description": _WHY[s]})
        for s in sorted(statuses)
    }


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


def form_of(model: type[BaseModel], *files: str) -> type[BaseModel]:
    """`model` as multipart/form-data: the fields `files` are file parts."""
    fields: dict[str, Any] = {name: (bytes, ...) for name in files}
    return create_model(
        f"{model.__name__}Form", __base__=model, __module__=model.__module__, **fields
    )


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
