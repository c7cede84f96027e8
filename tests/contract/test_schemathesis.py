"""The OpenAPI document as a contract: schemathesis drives every documented operation
of a real server (/v1, the compat faces, /files, health, metrics) with generated
requests, valid and invalid, authenticated with a real API key, and runs all of its
checks on every answer (but `max_response_time`: no timing is asserted). The examples,
coverage and fuzzing phases run, 25 examples an operation for the fuzzing."""

from __future__ import annotations

import re
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

from genq.api import create_app
from genq.settings import Settings
from tests.conftest import LiveServer, make_settings

PLAN = {
    "name": "contract",
    "generation_per_min": 1_000_000,
    "status_per_min": 1_000_000,
    "concurrent_jobs": 4,
    "retention_days": 1,
    "monthly_credits": 1_000_000_000,
}

CONFIG = """
request-timeout = 15
# the same requests every run (a failure reproduces); change it to explore others
seed = 20261202

[generation]
max-examples = 25
database = "none"
# genq refuses NUL in any string (PostgreSQL text cannot hold it) with 422, also in
# free-form objects (`metadata`, engine `input`) whose schema cannot say so
allow-x00 = false
# the key is sent as configured (`ignored_auth` still checks requests without it)
with-security-parameters = false

[[operations]]
# an endless stream (every event of the account, live): no one answer to check
include-path = "/v1/events"
enabled = false

[[operations]]
# OpenAI's Images API answers only when the job has ended, and this server runs no
# workers: every valid request would wait out its cap. The official SDK drives these
# (tests/compat/test_openai.py).
include-path = [
  "/compat/openai/images/generations",
  "/compat/openai/images/edits",
  "/compat/openai/images/variations",
]
enabled = false

[[operations]]
# The faces check what a JSON Schema cannot say (that an image, model or job named in
# the body exists, that a callback URL is a public http(s) URL, an aspect ratio's
# numbers) and answer it 400 in their provider's shape, as the providers do.
include-path-regex = "^/compat/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "404", "409", "429"]

[[operations]]
# POST: what a job's `input` must hold depends on its engine (each engine's JSON
# Schema is at GET /v1/engines/{name}). GET: a cursor is opaque, and only one the
# server issued is valid. Both are answered 422 `invalid_input`.
include-path = ["/v1/jobs"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "404", "409", "422", "429"]

[[operations]]
# In multipart/form-data every part is text or bytes: a "number" or "boolean" file
# or field is a valid part once sent, so there is no wrong type for the server to
# refuse.
include-path = [
  "/v1/files",
  "/v1/models/{model_id}/images",
  "/compat/photogpt/models/{model_id}/images",
  "/compat/useapi/v1/pixverse/animate",
  "/compat/useapi/v1/pixverse/meme_face",
]
checks.negative_data_rejection.enabled = false
"""


def _document() -> dict[str, Any]:
    """The OpenAPI document the server serves at /openapi.json (built here: the tests
    are made at collection, before any server runs; schemathesis 4.32's lazy
    `from_fixture` does not run on pytest 9)."""
    with tempfile.TemporaryDirectory() as d:
        return create_app(Settings(data_dir=d), workers=False).openapi()


schema = schemathesis.openapi.from_dict(_document(), config=SchemathesisConfig.from_str(CONFIG))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path_factory.mktemp("contract") / "data", plans={"contract": PLAN})
    srv = LiveServer(settings, workers=False).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def auth(live: LiveServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {live.new_key('contract', plan='contract')}"}


IDEMPOTENCY_KEY = re.compile(r"[!-~](?:[ -~]{0,253}[!-~])?")


@schema.parametrize()
def test_contract(case: schemathesis.Case, live: LiveServer, auth: dict[str, str]) -> None:
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and IDEMPOTENCY_KEY.fullmatch(key):
        # A key names one request: the generator draws few keys, and a key sent again
        # with another body is rightly refused (422 idempotency_key_reused).
        case.headers["Idempotency-Key"] = f"{key[:200]}-{uuid.uuid4()}"
    case.call_and_validate(base_url=live.url, headers=auth)


def test_the_document_tested_is_the_one_served(live: LiveServer) -> None:
    assert httpx.get(f"{live.url}/openapi.json").json() == _document()
