"""Error responses map to one exception class per status, with the problem body."""

from __future__ import annotations

import httpx
import pytest

import genq.client as sdk
from genq.client import AsyncClient, Client

from .fakes import BASE_URL, FakeServer, problem


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "bad_request", sdk.BadRequestError),
        (401, "unauthorized", sdk.AuthenticationError),
        (402, "insufficient_credits", sdk.InsufficientCreditsError),
        (403, "forbidden", sdk.PermissionDeniedError),
        (404, "not_found", sdk.NotFoundError),
        (409, "conflict", sdk.ConflictError),
        (410, "expired", sdk.GoneError),
        (413, "too_large", sdk.PayloadTooLargeError),
        (415, "unsupported_media_type", sdk.UnsupportedMediaTypeError),
        (422, "invalid_input", sdk.InvalidInputError),
        (429, "rate_limited", sdk.RateLimitError),
        (500, "internal", sdk.InternalServerError),
        (503, "unavailable", sdk.InternalServerError),
        (418, "teapot", sdk.APIStatusError),
    ],
)
def test_each_status_has_its_class(
    client: Client, server: FakeServer, status: int, code: str, cls: type[sdk.APIStatusError]
):
    client._core.max_retries = 0
    server.fail_next(problem(status, code, f"detail of {code}"))
    with pytest.raises(cls) as info:
        client.jobs.retrieve("job_x")
    err = info.value
    assert type(err) is cls
    assert isinstance(err, sdk.APIStatusError) and isinstance(err, sdk.GenqError)
    assert err.status_code == status and err.code == code
    assert err.detail == f"detail of {code}" and err.problem["status"] == status
    assert err.response.status_code == status
    assert str(err) == f"{status} {code}: detail of {code}"


def test_invalid_input_carries_the_field_errors(client: Client, server: FakeServer):
    errors = [{"field": "input.prompt", "message": "Field required", "type": "missing"}]
    server.fail_next(problem(422, "invalid_input", "the input is not valid", errors=errors))
    with pytest.raises(sdk.InvalidInputError) as info:
        client.jobs.create(engine="demo/text2image", input={})
    assert info.value.code == "invalid_input" and info.value.errors == errors


def test_not_found_codes_are_distinguished(client: Client):
    with pytest.raises(sdk.NotFoundError) as info:
        client.jobs.create(engine="nope/nope", input={})
    assert info.value.code == "engine_not_found"


def test_unauthenticated(server: FakeServer):
    http = httpx.Client(transport=httpx.MockTransport(server))
    with (
        Client(BASE_URL, "wrong", http_client=http) as c,
        pytest.raises(sdk.AuthenticationError) as info,
    ):
        c.account.retrieve()
    assert info.value.code == "unauthorized"
    http.close()


def test_rate_limit_exposes_retry_after(client: Client, server: FakeServer):
    client._core.max_retries = 0
    server.fail_next(problem(429, "rate_limited", "slow down", headers={"Retry-After": "7"}))
    with pytest.raises(sdk.RateLimitError) as info:
        client.jobs.retrieve("job_x")
    assert info.value.retry_after == 7.0


def test_a_non_json_error_body(client: Client, server: FakeServer):
    client._core.max_retries = 0
    server.fail_next(httpx.Response(502, text="<html>Bad Gateway</html>"))
    with pytest.raises(sdk.InternalServerError) as info:
        client.jobs.retrieve("job_x")
    assert info.value.code is None and info.value.status_code == 502
    assert info.value.detail == "<html>Bad Gateway</html>"


def test_a_malformed_success_body(client: Client, server: FakeServer):
    server.fail_next(httpx.Response(200, json={"unexpected": True}))
    with pytest.raises(sdk.APIResponseValidationError):
        client.jobs.retrieve("job_x")


async def test_async_errors_map_the_same(aclient: AsyncClient, server: FakeServer):
    with pytest.raises(sdk.NotFoundError) as info:
        await aclient.jobs.retrieve("job_missing")
    assert info.value.code == "not_found" and info.value.detail == "No such job"
