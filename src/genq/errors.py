"""genq's domain errors. One root; the API maps each to one problem+json response.

GenqError
 ├── Unauthorized            401 unauthorized
 ├── NotFound                404 not_found
 │    └── EngineNotFound     404 engine_not_found
 ├── MethodNotAllowed        405 method_not_allowed (with `Allow`)
 ├── Expired                 410 expired
 ├── RequestTimeout          408 request_timeout
 ├── TooLarge                413 too_large
 ├── UnsupportedMediaType    415 unsupported_media_type
 ├── InvalidInput            422 invalid_input (with per-field `errors`)
 ├── InsufficientCredits     402 insufficient_credits
 ├── Conflict                409 conflict
 ├── RateLimited             429 rate_limited
 │    └── Busy                429 busy (a submit's cap on unfinished jobs, `running`)
 ├── TooManyStreams          429 too_many_streams
 └── LeaseLost               (internal) a worker's write lost its fence

A class's docstring is its default message.
"""

from __future__ import annotations

from typing import Any, ClassVar


class GenqError(Exception):
    """Something went wrong."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or (self.__doc__ or "").strip()
        self.extra = extra
        super().__init__(self.detail)


class Unauthorized(GenqError):
    """A valid API key is required: send `Authorization: Bearer <key>`."""

    status, code, title = 401, "unauthorized", "Unauthorized"


class Forbidden(GenqError):
    """The key is valid but may not do this."""

    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(GenqError):
    """No such resource."""

    status, code, title = 404, "not_found", "Not found"


class EngineNotFound(NotFound):
    """No such engine."""

    code, title = "engine_not_found", "Engine not found"


class MethodNotAllowed(GenqError):
    """This path does not take that method."""

    status, code, title = 405, "method_not_allowed", "Method not allowed"


class Expired(GenqError):
    """This job has expired; its outputs were deleted."""

    status, code, title = 410, "expired", "Expired"


class RequestTimeout(GenqError):
    """The request body arrived too slowly."""

    status, code, title = 408, "request_timeout", "Request timeout"


class TooLarge(GenqError):
    """The request body is too large."""

    status, code, title = 413, "too_large", "Payload too large"


class UnsupportedMediaType(GenqError):
    """Unsupported content type."""

    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class InvalidInput(GenqError):
    """The request is not valid."""

    status, code, title = 422, "invalid_input", "Invalid input"

    def __init__(self, detail: str | None = None, errors: list[dict[str, Any]] | None = None):
        super().__init__(detail, errors=errors or [])


class InsufficientCredits(GenqError):
    """Not enough credits for this job."""

    status, code, title = 402, "insufficient_credits", "Insufficient credits"


class Conflict(GenqError):
    """The resource is not in a state that allows this."""

    status, code, title = 409, "conflict", "Conflict"


class RateLimited(GenqError):
    """Too many requests."""

    status, code, title = 429, "rate_limited", "Too many requests"


class Busy(RateLimited):
    """The account already has as many unfinished jobs as this submission allows."""

    code, title = "busy", "Busy"


class TooManyStreams(GenqError):
    """Too many event streams and long-polls open at once."""

    status, code, title = 429, "too_many_streams", "Too many open streams"


class StorageUnavailable(GenqError):
    """The object store does not answer; try again later."""

    status, code, title = 503, "storage_unavailable", "Storage unavailable"


class LeaseLost(GenqError):
    """The worker no longer holds this job's lease."""

    status, code, title = 409, "lease_lost", "Lease lost"


class ConfigError(ValueError):
    """The configuration (GENQ_UPSTREAMS, GENQ_DIFFUSERS, GENQ_STORAGE_URL, ...) says
    something genq cannot use: `genq serve`/`worker` end with the message, status 2."""
