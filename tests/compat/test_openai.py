"""The OpenAI Images face driven by the official `openai` SDK, changing only the base URL
and the key: generate (url and b64_json), edit and create_variation (multipart
uploads), models, idempotency, the job on /v1, and each class of error as the SDK
raises it."""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from PIL import Image

from tests.compat.conftest import FAST, PNG_MAGIC, SLOW, new_key, png_bytes
from tests.conftest import LiveServer

pytestmark = pytest.mark.timeout(60)


def client(server: LiveServer, key: str, **kwargs: Any) -> OpenAI:
    headers = kwargs.pop("headers", FAST)
    return OpenAI(
        base_url=f"{server.url}/compat/openai/v1",
        api_key=key,
        default_headers=headers,
        timeout=30,
        **kwargs,
    )


@pytest.fixture
def oai(server: LiveServer, key: str) -> Iterator[OpenAI]:
    c = client(server, key)
    try:
        yield c
    finally:
        c.close()


def _png(data: bytes) -> Image.Image:
    assert data.startswith(PNG_MAGIC)
    return Image.open(io.BytesIO(data))


def test_generate_answers_urls_that_download_and_the_job_is_on_v1(
    server: LiveServer, key: str, oai: OpenAI
) -> None:
    raw = oai.images.with_raw_response.generate(
        model="dall-e-3", prompt="a red fox", n=2, size="256x256", response_format="url"
    )
    result = raw.parse()
    assert len(result.data or []) == 2 and result.created > 0
    assert result.size == "256x256" and result.output_format == "png"
    for image in result.data or []:
        assert image.url is not None and image.b64_json is None
        got = httpx.get(image.url)
        assert got.status_code == 200
        assert _png(got.content).size == (256, 256)
    job_id = raw.headers["x-genq-job-id"]
    assert raw.headers["x-request-id"].startswith("req_")
    with server.client(key) as api:
        job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["engine"] == "demo/text2image"
    assert job["input"]["num_images"] == 2 and job["input"]["width"] == 256
    assert job["metadata"]["compat"] == "openai" and job["metadata"]["model"] == "dall-e-3"
    assert [o["url"] for o in job["outputs"]] == [i.url for i in result.data or []]
    assert job["credits"]["used"] == job["credits"]["estimate"] > 0


def test_gpt_image_models_answer_b64_json_by_default(oai: OpenAI) -> None:
    """The README quick-start: a GPT image model, the picture in `b64_json`."""
    result = oai.images.generate(
        model="gpt-image-1", prompt="a lighthouse at dusk", size="1024x1024", quality="low"
    )
    (image,) = result.data or []
    assert image.url is None and image.b64_json
    assert _png(base64.b64decode(image.b64_json)).size == (1024, 1024)
    assert result.quality == "low"
    # a genq engine name is a model too, and output_format reaches it
    webp = oai.images.generate(
        model="demo/text2image", prompt="a fox", output_format="webp", response_format="b64_json"
    )
    assert base64.b64decode((webp.data or [])[0].b64_json or "")[8:12] == b"WEBP"


def test_edit_and_variation_upload_the_image_to_an_engine_that_takes_one(
    server: LiveServer, key: str, oai: OpenAI
) -> None:
    raw = oai.images.with_raw_response.edit(
        image=("in.png", png_bytes(), "image/png"),
        mask=("mask.png", png_bytes(), "image/png"),
        prompt="make it bigger",
        response_format="url",
    )
    edited = raw.parse()
    (image,) = edited.data or []
    assert image.url is not None
    assert _png(httpx.get(image.url).content).size == (128, 96)  # demo/upscale, x2
    with server.client(key) as api:
        job = api.get(f"/v1/jobs/{raw.headers['x-genq-job-id']}").json()
    assert job["engine"] == "demo/upscale" and job["input"]["image"].startswith("file_")
    assert job["metadata"]["endpoint"] == "images/edits"
    with pytest.warns(DeprecationWarning):  # the SDK itself marks the endpoint retired
        varied = oai.images.create_variation(
            image=("in.png", png_bytes(), "image/png"), response_format="b64_json"
        )
    (image,) = varied.data or []
    assert _png(base64.b64decode(image.b64_json or "")).size == (128, 96)


def test_models_list_and_retrieve(oai: OpenAI) -> None:
    names = {m.id for m in oai.models.list()}
    assert {"gpt-image-1", "dall-e-3", "dall-e-2"} <= names
    assert oai.models.retrieve("dall-e-3").id == "dall-e-3"
    with pytest.raises(openai.NotFoundError) as err:
        oai.models.retrieve("no-such-model")
    assert err.value.code == "model_not_found"


def test_idempotency_key_gives_the_first_job_again(oai: OpenAI) -> None:
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    first = oai.images.with_raw_response.generate(
        model="dall-e-2", prompt="a cat", size="256x256", extra_headers=key
    )
    again = oai.images.with_raw_response.generate(
        model="dall-e-2", prompt="a cat", size="256x256", extra_headers=key
    )
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.parse().data == first.parse().data  # the same job's output URLs
    with pytest.raises(openai.UnprocessableEntityError) as err:  # the 422 class
        oai.with_options(max_retries=0).images.generate(
            model="dall-e-2", prompt="a dog", size="256x256", extra_headers=key
        )
    assert err.value.status_code == 422 and "Idempotency" in err.value.message


def test_errors_as_the_sdk_raises_them(server: LiveServer, key: str) -> None:
    with (
        client(server, "gq_not-a-key", max_retries=0) as bad,
        pytest.raises(openai.AuthenticationError) as auth,
    ):
        bad.images.generate(prompt="a fox")
    assert auth.value.status_code == 401 and auth.value.code == "invalid_api_key"
    assert auth.value.type == "invalid_request_error"

    with client(server, key, max_retries=0) as c:
        with pytest.raises(openai.NotFoundError) as missing:
            c.images.generate(model="dall-e-9", prompt="a fox")
        assert missing.value.code == "model_not_found"
        with pytest.raises(openai.BadRequestError) as size:
            c.images.generate(prompt="a fox", size="huge")
        assert size.value.param == "size" and size.value.status_code == 400
        with pytest.raises(openai.BadRequestError) as many:
            c.images.generate(prompt="a fox", n=11)
        assert many.value.param == "n"
        with pytest.raises(openai.BadRequestError) as engine_says:  # demo engine: 4 at most
            c.images.generate(prompt="a fox", n=5)
        assert engine_says.value.param == "n", engine_says.value.body
        with pytest.raises(openai.BadRequestError) as stream:
            c.images.generate(prompt="a fox", extra_body={"stream": True})
        assert stream.value.param == "stream"

    with client(server, key, max_retries=0, headers={}) as plain:  # scenario engines
        with pytest.raises(openai.BadRequestError) as moderated:
            plain.images.generate(model="test/moderated", prompt="something rude")
        assert moderated.value.code == "content_policy_violation"
        assert moderated.value.type == "image_generation_user_error"
        with pytest.raises(openai.InternalServerError) as boom:
            plain.images.generate(model="test/boom", prompt="anything")
        assert boom.value.type == "server_error" and "exploded" in boom.value.message

    with (
        client(server, new_key(server, credits=1), max_retries=0) as broke,
        pytest.raises(openai.RateLimitError) as quota,  # the 402 class, as OpenAI says it
    ):
        broke.images.generate(prompt="a fox")
    assert quota.value.code == "insufficient_quota"
    assert quota.value.response.headers["x-should-retry"] == "false"


def test_rate_limit_is_a_rate_limit_error_with_retry_after(server: LiveServer) -> None:
    with client(server, new_key(server, plan="tiny"), max_retries=0) as c:
        c.images.generate(model="dall-e-2", prompt="one", size="256x256")
        with pytest.raises(openai.RateLimitError) as err:
            c.images.generate(model="dall-e-2", prompt="two", size="256x256")
    assert err.value.code == "rate_limit_exceeded"
    assert int(err.value.response.headers["retry-after"]) >= 1


def test_a_job_past_the_wait_is_canceled_and_answered_504(server: LiveServer, key: str) -> None:
    headers = {**SLOW, "X-Genq-Wait": "1"}
    with (
        client(server, key, headers=headers, max_retries=0) as c,
        pytest.raises(openai.InternalServerError) as err,
    ):
        c.images.with_raw_response.generate(prompt="slow", size="256x256")
    assert err.value.status_code == 504 and err.value.code == "timeout"
    job_id = err.value.response.headers["x-genq-job-id"]
    with server.client(key) as api:
        job = api.get(f"/v1/jobs/{job_id}", params={"wait": 10}).json()
        if job["status"] != "canceled":
            job = api.get(f"/v1/jobs/{job_id}", params={"wait": 10}).json()
    assert job["status"] == "canceled" and job["credits"]["used"] == 0


def test_a_multipart_edit_without_an_image_is_a_400(server: LiveServer, key: str) -> None:
    with httpx.Client(
        base_url=f"{server.url}/compat/openai/v1", headers={"Authorization": f"Bearer {key}"}
    ) as h:
        r = h.post("/images/edits", files={"prompt": (None, "x")})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "image"
        r = h.post("/images/edits", json={"prompt": "x"})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
        r = h.get("/nope")
        assert r.status_code == 404 and set(r.json()["error"]) == {
            "message",
            "type",
            "param",
            "code",
        }
        assert json.loads(r.text)["error"]["type"] == "invalid_request_error"
