"""The OpenAPI document is one tools can use (valid, every reference resolves, every
body and answer documented), OPTIONS and 405 name every method of a path, and /docs
and /redoc load nothing from outside the server."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from genq.api import create_app
from genq.lifecycle import NON_TERMINAL, TERMINAL
from genq.settings import Settings
from tests.conftest import LiveServer

METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        return create_app(Settings(data_dir=d), workers=False).openapi()


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


def test_the_document_is_valid_and_every_reference_resolves(doc: dict[str, Any]) -> None:
    validate(doc)  # openapi-spec-validator; it does not follow references in schemas
    found = set(refs(doc))
    assert "#/components/schemas/WebhookSpec" in found
    for ref in found:
        node: Any = doc
        assert ref.startswith("#/"), ref
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
            node = node[part]


def test_every_request_with_a_body_documents_it(doc: dict[str, Any]) -> None:
    bodiless = {
        ("/v1/jobs/{job_id}/cancel", "post"),
        ("/v1/deliveries/{delivery_id}/redeliver", "post"),
    }
    missing = [
        f"{m.upper()} {p}"
        for p, m, op in operations(doc)
        if m in ("post", "put") and (p, m) not in bodiless and "requestBody" not in op
    ]
    assert missing == []
    body = doc["paths"]["/compat/useapi/v1/pixverse/animate"]["post"]["requestBody"]
    assert set(body["content"]) == {"application/json", "multipart/form-data"}
    form = doc["components"]["schemas"]["UseapiAnimateForm"]
    assert form["properties"]["image"] == {"format": "binary", "title": "Image", "type": "string"}


def test_errors_are_documented_in_the_shape_they_come_in(doc: dict[str, Any]) -> None:
    def schema(path: str, method: str, status: str) -> dict[str, Any]:
        content = doc["paths"][path][method]["responses"][status]["content"]
        return next(iter(content.items()))  # type: ignore[no-any-return]

    assert schema("/v1/jobs", "post", "402") == (
        "application/problem+json",
        {"schema": {"$ref": "#/components/schemas/Problem"}},
    )
    assert schema("/v1/jobs/{job_id}", "get", "422")[0] == "application/problem+json"
    assert schema("/files/{job_id}/{token}/{filename}", "get", "404")[0] == (
        "application/problem+json"
    )
    faces = {
        "/compat/masterpiecex/functions/general": "MasterpiecexError",
        "/compat/useapi/v1/pixverse/create": "UseapiError",
        "/compat/photogpt/images/generation": "PhotogptError",
        "/compat/vivix/api/v1/generate": "VivixError",
    }
    for path, model in faces.items():
        for status in ("400", "401", "402", "413", "429"):  # Guard's 413 as well
            assert schema(path, "post", status) == (
                "application/json",
                {"schema": {"$ref": f"#/components/schemas/{model}"}},
            )
    # FastAPI's own 422 shape is answered by no route
    assert "HTTPValidationError" not in str(doc)


def test_status_filters_and_event_ids_say_what_they_take(doc: dict[str, Any]) -> None:
    (status,) = [p for p in doc["paths"]["/v1/jobs"]["get"]["parameters"] if p["name"] == "status"]
    assert (status["style"], status["explode"]) == ("form", False)
    assert status["schema"]["items"]["enum"] == [*NON_TERMINAL, *TERMINAL]
    for path in ("/v1/events", "/v1/jobs/{job_id}/events"):
        (after,) = doc["paths"][path]["get"]["parameters"][-1:]
        assert after["name"] == "after"
        assert after["schema"] == {"type": "integer", "minimum": 0, "maximum": (1 << 63) - 1}


def test_metrics_are_documented_as_prometheus_text(doc: dict[str, Any]) -> None:
    content = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(content) == ["text/plain"]


def test_the_api_key_is_a_documented_bearer_scheme(doc: dict[str, Any]) -> None:
    assert doc["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert doc["paths"]["/v1/jobs"]["post"]["security"] == [{"apiKey": []}]
    assert "security" not in doc["paths"]["/healthz"]["get"]


def test_options_and_405_name_every_method_of_the_path(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url) as c:
        for path, allow in (
            ("/v1/jobs", "GET, POST, OPTIONS"),
            ("/v1/jobs/job_x", "GET, DELETE, OPTIONS"),
            ("/compat/masterpiecex/assets/file_x/content", "POST, PUT, OPTIONS"),
            ("/docs/swagger/swagger-ui.css", "GET, HEAD, OPTIONS"),
        ):
            r = c.options(path)
            assert (r.status_code, r.headers["allow"], r.content) == (204, allow, b"")
            r = c.patch(path)
            assert (r.status_code, r.headers["allow"]) == (405, allow)
        assert c.patch("/v1/jobs").json()["code"] == "method_not_allowed"
        assert c.options("/v1/nothing-here").status_code == 404


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_load_everything_from_the_server(server: LiveServer, page: str) -> None:
    with httpx.Client(base_url=server.url) as c:
        r = c.get(page)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        html = r.text
        assert not re.search(r"https?://", html), "the page loads something from outside"
        urls = set(re.findall(r"""(?:src|href)=["']([^"']+)["']""", html))
        urls |= set(re.findall(r"""(?:url|spec-url):\s*['"]([^'"]+)['"]""", html))
        urls |= set(re.findall(r"""spec-url=["']([^"']+)["']""", html))
        assert "/openapi.json" in urls
        assert any(u.endswith(".js") for u in urls)
        for url in urls:
            got = c.get(url)
            assert got.status_code == 200, url
            assert len(got.content) > 100, url
        if page == "/redoc":  # redoc's footer logo (the package points it here)
            assert c.get("/redoc/logo-mini.svg").status_code == 200


def test_the_status_filter_takes_what_it_documents(api: httpx.Client) -> None:
    assert api.get("/v1/jobs", params={"status": "queued,running"}).status_code == 200
    for bad in ("", "queued,,running", "done"):  # `status=` is no status, not every one
        r = api.get("/v1/jobs", params={"status": bad})
        assert (r.status_code, r.json()["code"]) == (422, "invalid_input"), bad


def test_face_json_bodies_are_held_to_their_documented_types(api: httpx.Client) -> None:
    # JSON carries types: `false` is no integer (a form's text is still coerced)
    bodies = {
        "/compat/masterpiecex/functions/general": {"prompt": "a vase", "seed": False},
        "/compat/photogpt/models": {"name": "m", "age": False},
        "/compat/vivix/api/v1/generate": {
            "model": "grok-imagine-image",
            "prompt": "p",
            "seed": True,
        },
    }
    for path, body in bodies.items():
        r = api.post(path, json=body)
        assert r.status_code == 400, (path, r.text)
    ok = api.post("/compat/masterpiecex/functions/general", json={"prompt": "a vase", "seed": 7})
    assert ok.status_code == 200, ok.text
    form = api.post(
        "/compat/useapi/v1/pixverse/meme_face",
        data={"prompt": "a cat", "seed_value": "7"},
        files={"face": ("face.png", b"\x89PNG not really", "image/png")},
    )
    assert form.status_code == 200, form.text


def test_an_idempotency_key_is_printable_ascii_as_documented(api: httpx.Client) -> None:
    body = {"engine": "demo/text2image", "input": {"prompt": "a fox"}}
    for key in ("clé".encode("latin-1"), b"a\tb"):
        r = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
        assert (r.status_code, r.json()["code"]) == (422, "invalid_input"), key
        face = api.post(
            "/compat/masterpiecex/functions/general",
            json={"prompt": "a vase"},
            headers={"Idempotency-Key": key},
        )
        assert face.status_code == 400, face.text
    ok = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "order 42/a~b"})
    assert ok.status_code == 202, ok.text
