"""The SDK's public surface is exactly what it should be, and it stands alone."""

from __future__ import annotations

import json
import subprocess
import sys

import genq.client

EXPECTED = {
    # clients
    "Client",
    "AsyncClient",
    # records
    "Job",
    "JobOutput",
    "JobError",
    "Credits",
    "JobPage",
    "AsyncJobPage",
    "Engine",
    "Upstream",
    "File",
    "Model",
    "Account",
    # errors
    "GenqError",
    "APIError",
    "APIConnectionError",
    "APITimeoutError",
    "APIResponseValidationError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "InsufficientCreditsError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "GoneError",
    "PayloadTooLargeError",
    "UnsupportedMediaTypeError",
    "InvalidInputError",
    "RateLimitError",
    "InternalServerError",
    "JobFailed",
    "WaitTimeout",
    # constants
    "DEFAULT_BASE_URL",
    "TERMINAL_STATUSES",
    "__version__",
}


def test_all_is_exactly_the_public_surface():
    assert set(genq.client.__all__) == EXPECTED
    assert len(genq.client.__all__) == len(EXPECTED)
    for name in EXPECTED:
        assert hasattr(genq.client, name), name
    public = {n for n in vars(genq.client) if not n.startswith("_")}
    assert public <= EXPECTED | {"annotations"}


def test_the_error_tree():
    from genq.client import (
        APIConnectionError,
        APIError,
        APIStatusError,
        APITimeoutError,
        GenqError,
        InternalServerError,
        JobFailed,
        RateLimitError,
        WaitTimeout,
    )

    assert issubclass(APITimeoutError, APIConnectionError)
    assert issubclass(APIConnectionError, APIError) and issubclass(APIStatusError, APIError)
    assert issubclass(RateLimitError, APIStatusError)
    assert issubclass(InternalServerError, APIStatusError)
    for cls in (APIError, JobFailed, WaitTimeout):
        assert issubclass(cls, GenqError)
    assert not issubclass(JobFailed, APIError) and not issubclass(WaitTimeout, APIError)


def test_terminal_statuses_are_the_closed_set():
    terminal = {"succeeded", "failed", "canceled", "expired"}
    assert terminal == genq.client.TERMINAL_STATUSES


def test_the_sdk_imports_nothing_of_the_server():
    code = (
        "import sys, json, genq.client; "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('genq', 'fastapi', 'starlette', 'sqlalchemy', 'uvicorn', "
        "'typer'))))"
    )
    # A fresh interpreter: `genq/__init__` may re-export the client, never the server.
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    modules = json.loads(out)
    assert all(
        m == "genq" or m == "genq.client" or m.startswith("genq.client.") for m in modules
    ), modules
