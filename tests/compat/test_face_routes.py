"""What no route of a face serves (an unknown path, an empty id, a wrong method) is
answered in that provider's error shape, not genq's problem+json; /v1 keeps
problem+json."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.compat.conftest import face
from tests.conftest import LiveServer


def error_of(name: str, body: dict[str, Any]) -> str:
    """The provider's error code (or message) from its error body."""
    if name == "photogpt":
        assert set(body) == {"error"}, body
        return str(body["error"]["code"])
    if name == "useapi":
        assert set(body) == {"error", "code"}, body
        return str(body["code"])
    assert set(body) >= {"error", "message"}, body
    return str(body["error"])


def shaped(name: str, r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json", r.headers
    body = r.json()
    assert "type" not in body and "title" not in body  # not problem+json
    return error_of(name, body)


NOT_FOUND = {"masterpiecex": "not_found", "useapi": "404", "photogpt": "not_found"}
NOT_FOUND["vivix"] = "NOT_FOUND"
NOT_ALLOWED = {
    "masterpiecex": "method_not_allowed",
    "useapi": "405",
    "photogpt": "method_not_allowed",
    "vivix": "METHOD_NOT_ALLOWED",
}
CASES = [  # (face, an unknown path, an empty id, a path and a method it does not take)
    ("masterpiecex", "/functions/nope", "/status/", ("DELETE", "/status/job_01X")),
    ("useapi", "/v1/pixverse/nope", "/v1/pixverse/nope/", ("PUT", "/v1/pixverse/create")),
    ("photogpt", "/nope", "/jobs/", ("DELETE", "/jobs/job_01X")),
    ("vivix", "/api/v1/nope", "/api/v1/generations/", ("POST", "/api/v1/generations/job_01X")),
]


@pytest.mark.parametrize(("name", "unknown", "empty", "wrong"), CASES)
def test_what_no_route_serves_answers_in_the_face_shape(
    server: LiveServer,
    key: str,
    name: str,
    unknown: str,
    empty: str,
    wrong: tuple[str, str],
) -> None:
    with face(server, key, name) as client:
        assert shaped(name, client.get(unknown), 404) == NOT_FOUND[name]
        assert shaped(name, client.post(unknown, json={}), 404) == NOT_FOUND[name]
        assert shaped(name, client.get(empty), 404) == NOT_FOUND[name]
        method, path = wrong
        r = client.request(method, path)
        assert shaped(name, r, 405) == NOT_ALLOWED[name]
        assert "GET" in r.headers["allow"] or "POST" in r.headers["allow"]
    with face(server, None, name) as anon:  # no key: still the face's own 404
        assert shaped(name, anon.get(unknown), 404) == NOT_FOUND[name]


def test_v1_and_other_paths_keep_problem_json(server: LiveServer, key: str) -> None:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as api:
        for r, status in (
            (api.get("/v1/nope"), 404),
            (api.get("/compat/unknownface/status/x"), 404),
            (api.get("/compat/vivixfoo/api/v1/generations/x"), 404),
            (api.put("/v1/jobs"), 405),
        ):
            assert r.status_code == status
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["status"] == status


CREATES = {  # a create of each face
    "masterpiecex": "/functions/general",
    "useapi": "/v1/pixverse/create",
    "photogpt": "/images/generation",
    "vivix": "/api/v1/generate",
}


@pytest.mark.parametrize("name", sorted(CREATES))
def test_a_body_past_its_limit_is_refused_in_the_face_shape(
    server: LiveServer, key: str, name: str
) -> None:
    """The body limits are enforced before any route; under a face the 413 still comes
    in that provider's shape (and closes the connection: the body is not read)."""
    too_big = b'{"prompt": "' + b"x" * server.settings.max_json_bytes + b'"}'
    with face(server, key, name) as client:
        r = client.post(
            CREATES[name], content=too_big, headers={"content-type": "application/json"}
        )
        assert shaped(name, r, 413)
        assert r.headers["connection"] == "close"
