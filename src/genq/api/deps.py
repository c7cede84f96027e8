"""Request-scoped helpers: the assembled `Genq`, the caller, and JSON bodies."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from genq.accounts import Principal
from genq.core import Genq
from genq.errors import InvalidInput, TooLarge, UnsupportedMediaType
from genq.jobs import pydantic_errors

M = TypeVar("M", bound=BaseModel)


def get_genq(request: Request) -> Genq:
    genq: Genq = request.app.state.genq
    return genq


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


async def principal(request: Request) -> Principal:
    p: Principal = await get_genq(request).accounts.authenticate(bearer(request))
    request.state.principal = p
    return p


Caller = Annotated[Principal, Depends(principal)]
App = Annotated[Genq, Depends(get_genq)]


async def json_body(request: Request, model: type[M], *, max_bytes: int) -> M:
    """Parse a JSON body into `model`: 415 for another content type, 413 past the
    limit, 422 for malformed JSON or a body that does not match."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise UnsupportedMediaType(f"send the body as application/json, not {ctype or 'nothing'}")
    raw = await request.body()
    if len(raw) > max_bytes:
        raise TooLarge(f"the body is larger than {max_bytes} bytes")
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}", errors=[
            {"field": "body", "message": str(exc), "type": "json_invalid"}]) from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput("the request body is not valid", errors=pydantic_errors(exc, "body")
                           ) from exc
