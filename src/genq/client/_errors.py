"""The SDK's exceptions, and the one mapping from an HTTP error response to them.

GenqError                          anything the SDK raises on purpose
 ├── APIError                      talking to the server went wrong (`.request`)
 │    ├── APIConnectionError       no usable response: refused, reset, DNS, TLS...
 │    │    └── APITimeoutError     the request timed out
 │    ├── APIResponseValidationError  a 2xx body that is not what the API promises
 │    └── APIStatusError           a 4xx/5xx answer (`.status_code`, `.code`,
 │         │                       `.detail`, `.problem`, `.response`)
 │         ├── BadRequestError              400
 │         ├── AuthenticationError          401 unauthorized
 │         ├── InsufficientCreditsError     402 insufficient_credits
 │         ├── PermissionDeniedError        403
 │         ├── NotFoundError                404 not_found, engine_not_found
 │         ├── ConflictError                409 conflict
 │         ├── GoneError                    410 expired
 │         ├── PayloadTooLargeError         413 too_large
 │         ├── UnsupportedMediaTypeError    415 unsupported_media_type
 │         ├── InvalidInputError            422 invalid_input (`.errors`)
 │         ├── RateLimitError               429 rate_limited (`.retry_after`)
 │         └── InternalServerError          5xx
 ├── JobFailed                     `jobs.run` ended failed, canceled or expired (`.job`)
 └── WaitTimeout                   `jobs.wait`/`jobs.run` gave up; the job goes on (`.job`)

Error bodies are RFC 9457 problem+json; `.code` is its stable `code` member.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from genq.client._retry import parse_retry_after

if TYPE_CHECKING:
    from genq.client._types import Job


class GenqError(Exception):
    """The root of every error the SDK raises on purpose."""


class APIError(GenqError):
    """A request to the server went wrong."""

    def __init__(self, message: str, *, request: httpx.Request | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request


class APIConnectionError(APIError):
    """The server could not be reached or gave no usable answer."""

    def __init__(self, message: str = "connection error", *, request: httpx.Request) -> None:
        super().__init__(message, request=request)


class APITimeoutError(APIConnectionError):
    """The request timed out."""

    def __init__(self, request: httpx.Request) -> None:
        super().__init__("request timed out", request=request)


class APIResponseValidationError(APIError):
    """A successful response whose body is not the shape the API documents."""

    def __init__(self, message: str, *, response: httpx.Response) -> None:
        super().__init__(message, request=response.request)
        self.response = response
        self.status_code = response.status_code


class APIStatusError(APIError):
    """The server answered with a 4xx or 5xx status."""

    def __init__(self, response: httpx.Response, problem: dict[str, Any]) -> None:
        self.response = response
        self.status_code = response.status_code
        self.problem = problem
        code = problem.get("code")
        self.code: str | None = code if isinstance(code, str) else None
        title = problem.get("title")
        self.title: str = title if isinstance(title, str) else response.reason_phrase
        detail = problem.get("detail")
        self.detail: str = detail if isinstance(detail, str) and detail else self.title
        label = f"{self.status_code} {self.code}" if self.code else str(self.status_code)
        super().__init__(f"{label}: {self.detail}", request=response.request)


class BadRequestError(APIStatusError):
    """400: the request is malformed."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing, unknown or revoked."""


class InsufficientCreditsError(APIStatusError):
    """402: the account has too few credits for this job."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not do this."""


class NotFoundError(APIStatusError):
    """404: no such job, engine, file or model (or it belongs to another account)."""


class ConflictError(APIStatusError):
    """409: the resource is in the wrong state, e.g. canceling a finished job."""


class GoneError(APIStatusError):
    """410: the job has expired and its outputs were deleted."""


class PayloadTooLargeError(APIStatusError):
    """413: the request body or upload is too large."""


class UnsupportedMediaTypeError(APIStatusError):
    """415: the upload's or body's content type is not accepted."""


class InvalidInputError(APIStatusError):
    """422: the request is not valid; `.errors` lists the offending fields."""

    def __init__(self, response: httpx.Response, problem: dict[str, Any]) -> None:
        super().__init__(response, problem)
        errors = problem.get("errors")
        self.errors: list[dict[str, Any]] = (
            [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
        )


class RateLimitError(APIStatusError):
    """429: too many requests; `.retry_after` says how many seconds to wait, if known."""

    def __init__(self, response: httpx.Response, problem: dict[str, Any]) -> None:
        super().__init__(response, problem)
        self.retry_after: float | None = parse_retry_after(response.headers)


class InternalServerError(APIStatusError):
    """5xx: the server failed."""


class JobFailed(GenqError):
    """The job ended `failed`, `canceled` or `expired` instead of `succeeded`."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.code: str = job.error.code if job.error else job.status
        self.message: str = job.error.message if job.error and job.error.message else job.status
        super().__init__(f"job {job.id} {job.status}: {self.code}: {self.message}")


class WaitTimeout(GenqError):
    """Waiting for the job took longer than the caller allowed; the job itself goes on."""

    def __init__(self, job: Job, timeout: float) -> None:
        self.job = job
        self.timeout = timeout
        super().__init__(f"job {job.id} still {job.status} after waiting {timeout:g}s")


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: InvalidInputError,
    429: RateLimitError,
}


def status_error(response: httpx.Response) -> APIStatusError:
    """The exception for an error response; its body must have been read."""
    problem: dict[str, Any] = {}
    try:
        body = response.json()
    except ValueError:  # not JSON: an HTML page from a proxy, an empty body...
        text = response.text.strip()
        if text:
            problem = {"detail": text[:200]}
    else:
        if isinstance(body, dict):
            problem = body
    cls = _BY_STATUS.get(response.status_code)
    if cls is None:
        cls = InternalServerError if response.status_code >= 500 else APIStatusError
    return cls(response, problem)


def error_for(request: httpx.Request, outcome: httpx.Response | httpx.TransportError) -> APIError:
    """The exception for a request that failed for good."""
    if isinstance(outcome, httpx.Response):
        return status_error(outcome)
    if isinstance(outcome, httpx.TimeoutException):
        return APITimeoutError(request)
    return APIConnectionError(f"{type(outcome).__name__}: {outcome}", request=request)
