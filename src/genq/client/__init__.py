"""The genq Python SDK: `Client` and `AsyncClient` for a genq server, over HTTP only.

    from genq.client import Client

    with Client() as client:                      # $GENQ_BASE_URL, $GENQ_API_KEY
        job = client.jobs.run(engine="demo/text2image", input={"prompt": "a red fox"})
        job.outputs[0].download("out/")

It depends on httpx and pydantic alone and imports nothing else of genq.
"""

from genq.client._client import AsyncClient, Client
from genq.client._core import DEFAULT_BASE_URL
from genq.client._errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    GenqError,
    GoneError,
    InsufficientCreditsError,
    InternalServerError,
    InvalidInputError,
    JobFailed,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    UnsupportedMediaTypeError,
    WaitTimeout,
)
from genq.client._types import (
    TERMINAL_STATUSES,
    Account,
    AsyncJobPage,
    Credits,
    Engine,
    File,
    Job,
    JobError,
    JobOutput,
    JobPage,
    Model,
    Upstream,
)
from genq.client._version import __version__

__all__ = [
    "DEFAULT_BASE_URL",
    "TERMINAL_STATUSES",
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "Account",
    "AsyncClient",
    "AsyncJobPage",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ConflictError",
    "Credits",
    "Engine",
    "File",
    "GenqError",
    "GoneError",
    "InsufficientCreditsError",
    "InternalServerError",
    "InvalidInputError",
    "Job",
    "JobError",
    "JobFailed",
    "JobOutput",
    "JobPage",
    "Model",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "UnsupportedMediaTypeError",
    "Upstream",
    "WaitTimeout",
    "__version__",
]
