"""The Runway face driven by the official `runwayml` SDK, changing only its base URL and
key: text_to_image and image_to_video (data URIs and this server's output URLs as
images), tasks.retrieve through every status, tasks.delete, wait_for_task_output, the
version header, idempotency, each class of error as the SDK raises it, and the same
job on /v1."""

from __future__ import annotations

import base64
import io
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import runwayml
from PIL import Image
from runwayml import RunwayML
from runwayml.lib import polling
from runwayml.types.task_retrieve_response import Failed
from ulid import ULID

from genq.api.compat.runway import render
from tests.compat.conftest import FAST, PNG_MAGIC, SLOW, new_key, png_bytes, poll
from tests.conftest import LiveServer

MP4_BOX = b"ftyp"
SMALL = {"X-Genq-Input": '{"delay_s": 0, "width": 128, "height": 64}'}


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """`wait_for_task_output` sleeps 6 s (+-1.5) between reads: 0.1 s here."""
    monkeypatch.setattr(polling, "POLL_TIME", 0.1)
    monkeypatch.setattr(polling, "POLL_JITTER", 0)


def runway(server: LiveServer, key: str, **kwargs: Any) -> RunwayML:
    """The SDK as a user makes it, plus strict validation of every answer against its
    types (a field missing or of the wrong type fails the call)."""
    return RunwayML(
        api_key=key,
        base_url=f"{server.url}/compat/runway",
        _strict_response_validation=True,
        **kwargs,
    )


@pytest.fixture
def client(server: LiveServer, key: str) -> Iterator[RunwayML]:
    with runway(server, key) as c:
        yield c


def job_of(task_id: str) -> str:
    return f"job_{ULID.from_bytes(uuid.UUID(task_id).bytes)}"


def data_uri(blob: bytes, ctype: str = "image/png") -> str:
    return f"data:{ctype};base64,{base64.b64encode(blob).decode()}"


def test_text_to_image_waits_for_a_picture_that_downloads_and_is_the_job_on_v1(
    server: LiveServer, key: str, client: RunwayML
) -> None:
    task = client.text_to_image.create(
        model="gen4_image", prompt_text="a red fox", ratio="1280:720", extra_headers=FAST
    )
    uuid.UUID(task.id)  # Runway's ids are UUIDs
    done = task.wait_for_task_output(timeout=60)
    assert done.status == "SUCCEEDED"
    assert done.id == task.id
    assert len(done.output) == 1
    blob = httpx.get(done.output[0]).content
    assert blob.startswith(PNG_MAGIC)
    w, h = Image.open(io.BytesIO(blob)).size
    assert abs(w / h - 16 / 9) < 0.05, (w, h)
    assert done.cost.credits >= 1
    with server.client(key) as api:
        job = api.get(f"/v1/jobs/{job_of(task.id)}").json()
    assert job["engine"] == "demo/text2image"
    assert job["status"] == "succeeded"
    assert job["input"]["prompt"] == "a red fox"
    assert job["metadata"]["compat"] == "runway"
    assert job["metadata"]["model"] == "gen4_image"
    assert job["outputs"][0]["url"] == done.output[0]
    # the same task by its genq id too
    assert client.tasks.retrieve(job["id"]).status == "SUCCEEDED"
    org = client.organization.retrieve()
    with server.client(key) as api:
        assert org.credit_balance == api.get("/v1/account").json()["balance"]
    assert org.tier.models["gen4_image"].max_concurrent_generations == 5  # the pro plan


@pytest.mark.parametrize(
    ("code", "failure_code"),
    [("moderated", "SAFETY.OUTPUT"), ("engine_error", "INTERNAL.BAD_OUTPUT"), (None, "INTERNAL")],
)
def test_a_failed_job_reads_as_runways_failed_task(code: str | None, failure_code: str) -> None:
    """The SDK's own type of a FAILED task accepts what the face renders (no failing
    engine is routed on the shared server; the upstream tests run one end to end)."""
    job_id = f"job_{ULID()}"
    job = {
        "id": job_id,
        "status": "failed",
        "created_at": "2026-12-02T10:00:00.000Z",
        "credits": {"estimate": 2, "used": 0, "refunded": 2},
        "error": {"code": code, "message": "it broke", "retryable": False} if code else None,
        "outputs": [],
    }
    body = render(job)
    task = Failed.model_validate(body)
    assert task.status == "FAILED" and task.cost.credits == 0
    assert task.failure_code == failure_code
    assert task.failure == ("it broke" if code else "The task failed.")
    assert job_of(task.id) == job_id


def test_image_to_video_from_a_data_uri_and_from_an_output_url(
    server: LiveServer, key: str, client: RunwayML
) -> None:
    first = client.image_to_video.create(
        model="gen4_turbo",
        prompt_image=data_uri(png_bytes()),
        prompt_text="the fox runs",
        ratio="1280:720",
        duration=2,
        seed=7,
        extra_headers=SMALL,
    )
    picture = client.text_to_image.create(
        model="gen4_image_turbo", prompt_text="a hill", ratio="960:960", extra_headers=SMALL
    )
    video = first.wait_for_task_output(timeout=60)
    assert video.status == "SUCCEEDED"
    assert len(video.output) == 1  # the video, not its thumbnail
    assert MP4_BOX in httpx.get(video.output[0]).content[:16]
    with server.client(key) as api:
        job = api.get(f"/v1/jobs/{job_of(first.id)}").json()
    assert job["engine"] == "demo/text2video"
    assert job["input"]["seconds"] == 2 and job["input"]["seed"] == 7
    assert job["metadata"]["ratio"] == "1280:720"
    # an output URL of this server is an image reference; as a [{uri, position}] list too
    url = picture.wait_for_task_output(timeout=60).output[0]
    second = client.image_to_video.create(
        model="gen4_turbo",
        prompt_image=[{"uri": url, "position": "first"}],
        ratio="720:1280",
        extra_headers=SMALL,
    )
    assert second.wait_for_task_output(timeout=60).status == "SUCCEEDED"


def test_the_readme_quick_start_runs_unchanged(
    server: LiveServer,
    key: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """runwayml's README usage, with only the base URL and key changed (through the
    SDK's own environment variables). Its remote `promptImage` is not fetched: the
    demo engine behind gen4_turbo takes no image, so it is kept as given."""
    monkeypatch.setenv("RUNWAYML_API_SECRET", key)
    monkeypatch.setenv("RUNWAYML_BASE_URL", f"{server.url}/compat/runway")
    monkeypatch.setenv("RUNWAYML_CUSTOM_HEADERS", f"X-Genq-Input: {SMALL['X-Genq-Input']}")

    import os

    client = RunwayML(
        api_key=os.environ.get("RUNWAYML_API_SECRET"),  # This is the default and can be omitted
    )

    image_to_video = client.image_to_video.create(
        model="gen4_turbo",
        prompt_image="https://example.com/assets/bunny.jpg",
        ratio="1280:720",
        prompt_text="The bunny is eating a carrot",
    )
    print(image_to_video.id)

    assert capsys.readouterr().out.strip() == image_to_video.id
    task = image_to_video.wait_for_task_output(timeout=60)
    assert MP4_BOX in httpx.get(task.output[0]).content[:16]
    with server.client(key) as api:
        job = api.get(f"/v1/jobs/{job_of(task.id)}").json()
    assert job["metadata"]["images"] == ["https://example.com/assets/bunny.jpg"]
    assert job["input"]["prompt"] == "The bunny is eating a carrot"
    client.close()


def test_status_words_progress_throttled_and_delete(server: LiveServer) -> None:
    """A free account runs one job at a time: the second waits THROTTLED; a running task
    reads RUNNING with progress in 0-1; DELETE cancels (CANCELLED), and deleting an
    ended task removes it (404)."""
    key = new_key(server, plan="free")
    with runway(server, key) as client:
        a = client.text_to_image.create(model="gen4_image", prompt_text="one", extra_headers=SLOW)
        b = client.text_to_image.create(model="gen4_image", prompt_text="two", extra_headers=SLOW)
        seen: list[Any] = []
        poll(
            lambda: {"a": client.tasks.retrieve(a.id), "b": client.tasks.retrieve(b.id)},
            lambda r: r["a"].status == "RUNNING" and r["b"].status == "THROTTLED",
            seen=seen,
        )
        running = seen[-1]["a"]
        assert 0 <= running.progress <= 1
        assert running.estimated_cost.credits >= 1
        assert seen[-1]["b"].estimated_cost.credits >= 1
        client.tasks.delete(b.id)  # queued: canceled at once
        assert client.tasks.retrieve(b.id).status == "CANCELLED"
        client.tasks.delete(a.id)  # running: asked to stop
        ended = poll(
            lambda: {"t": client.tasks.retrieve(a.id)},
            lambda r: r["t"].status == "CANCELLED",
        )["t"]
        assert ended.cost.credits == 0
        client.tasks.delete(a.id)  # ended: deleted
        with pytest.raises(runwayml.NotFoundError) as exc:
            client.tasks.retrieve(a.id)
        assert exc.value.body == {"error": "Task not found"}
    with server.client(key) as api:
        canceled = api.get(f"/v1/jobs/{job_of(b.id)}").json()
    assert canceled["status"] == "canceled"
    assert canceled["credits"]["used"] == 0


def test_errors_as_the_sdk_raises_them(server: LiveServer, key: str, client: RunwayML) -> None:
    # 401
    with runway(server, "sk-wrong") as bad, pytest.raises(runwayml.AuthenticationError) as e401:
        bad.tasks.retrieve(str(uuid.uuid4()))
    assert isinstance(e401.value.body, dict) and e401.value.body["error"]
    # 404: unknown, and another account's task
    with pytest.raises(runwayml.NotFoundError):
        client.tasks.retrieve(str(uuid.uuid4()))
    mine = client.text_to_image.create(model="gen4_image", prompt_text="x", extra_headers=FAST)
    with runway(server, new_key(server)) as other:
        with pytest.raises(runwayml.NotFoundError):
            other.tasks.retrieve(mine.id)
        with pytest.raises(runwayml.NotFoundError):
            other.tasks.delete(mine.id)
    # 400: bad input in Runway's shape, an unknown model, remote images
    with pytest.raises(runwayml.BadRequestError) as e400:
        client.text_to_image.create(model="gen4_image", prompt_text="", ratio="1280:720")
    body = e400.value.body
    assert isinstance(body, dict) and body["issues"][0]["path"] == ["promptText"]
    with pytest.raises(runwayml.BadRequestError) as unknown:
        client.text_to_image.create(model="gen4_turbo", prompt_text="a fox")  # a video model
    assert "gen4_image" in str(unknown.value.body)
    with pytest.raises(runwayml.BadRequestError) as upload_uri:
        client.image_to_video.create(
            model="gen4_turbo", prompt_image="runway://uploads/fox.png", ratio="1280:720"
        )
    assert "data URI" in str(upload_uri.value.body)
    with pytest.raises(runwayml.BadRequestError):
        client.image_to_video.create(
            model="gen4_turbo", prompt_image="data:image/png;base64,@@@", ratio="1280:720"
        )
    # 400: the version header, as Runway checks it (before the key)
    with (
        RunwayML(
            api_key="sk-wrong", base_url=f"{server.url}/compat/runway", runway_version="2099-01-01"
        ) as odd,
        pytest.raises(runwayml.BadRequestError) as eversion,
    ):
        odd.tasks.retrieve(mine.id)
    assert "2024-11-06" in str(eversion.value.body)
    r = httpx.post(
        f"{server.url}/compat/runway/v1/text_to_image",
        json={"model": "gen4_image", "promptText": "x"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 400 and "X-Runway-Version" in r.json()["error"]
    # 402: no credits left
    with (
        runway(server, new_key(server, credits=0)) as broke,
        pytest.raises(runwayml.APIStatusError) as e402,
    ):
        broke.text_to_image.create(model="gen4_image", prompt_text="a fox")
    assert e402.value.status_code == 402
    assert "credits" in str(e402.value.body)
    # 429: one generation a minute on the tiny plan (no SDK retries)
    with runway(server, new_key(server, plan="tiny"), max_retries=0) as tiny:
        tiny.text_to_image.create(model="gen4_image", prompt_text="a", extra_headers=FAST)
        with pytest.raises(runwayml.RateLimitError) as e429:
            tiny.text_to_image.create(model="gen4_image", prompt_text="b", extra_headers=FAST)
    assert int(e429.value.response.headers["retry-after"]) >= 1
    # 422: an Idempotency-Key reused with another body
    k = {"Idempotency-Key": f"k-{uuid.uuid4()}", **FAST}
    one = client.text_to_image.create(model="gen4_image", prompt_text="same", extra_headers=k)
    again = client.text_to_image.create(model="gen4_image", prompt_text="same", extra_headers=k)
    assert again.id == one.id
    with pytest.raises(runwayml.UnprocessableEntityError):
        client.text_to_image.create(model="gen4_image", prompt_text="other", extra_headers=k)
