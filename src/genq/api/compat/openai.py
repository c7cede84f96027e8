"""openai face (`/compat/openai`): placeholder, filled in by issue 14."""

from __future__ import annotations

from typing import Final

from starlette.responses import Response

from genq.api.compat._common import face_router, json_response
from genq.errors import GenqError

NAME: Final = "openai"


def error_response(exc: GenqError) -> Response:
    return json_response({"detail": exc.detail}, exc.status)


router = face_router(f"/compat/{NAME}", NAME, error_response)
