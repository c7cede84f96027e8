"""The Replicate face driven by the official `replicate` SDK (only its base URL and
key changed): Replicate's README quick-start, models and versions, predictions by
model and by version, `Prefer: wait`, cursor paging, cancel, the SSE stream, signed
webhooks verified with the SDK's own `validate`, each error class as the SDK raises
it, and a prediction seen as the same job on `/v1`."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import replicate
from replicate.exceptions import ModelError, ReplicateError
from replicate.helpers import FileOutput
from replicate.webhook import InvalidSignatureError

from genq.api.compat import replicate as face
from tests.compat.conftest import FAST, PNG_MAGIC, SLOW, expired_job, new_key, poll
from tests.conftest import LiveServer, Tls, make_settings

_OPEN: list[replicate.Client] = []


def client(server: LiveServer, key: str, headers: dict[str, str] | None = None) -> replicate.Client:
    extra: dict[str, Any] = {"headers": dict(headers)} if headers else {}
    made = replicate.Client(api_token=key, base_url=f"{server.url}/compat/replicate", **extra)
    _OPEN.append(made)
    return made


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop()._client.close()  # (the SDK has no close of its own)


def job_id(prediction_id: str) -> str:
    return f"job_{prediction_id.upper()}"


class RawReceiver:
    """A loopback receiver keeping each post's raw body and headers (to verify them)."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], str]] = []
        rx = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"])).decode()
                rx.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait(self, n: int, timeout: float = 20) -> list[tuple[dict[str, str], str]]:
        deadline = time.monotonic() + timeout
        while len(self.posts) < n:
            assert time.monotonic() < deadline, f"got {len(self.posts)} of {n} posts"
            time.sleep(0.05)
        return self.posts


@pytest.fixture
def rx() -> Iterator[RawReceiver]:
    receiver = RawReceiver()
    try:
        yield receiver
    finally:
        receiver.httpd.shutdown()
        receiver.httpd.server_close()


def test_readme_quick_start_returns_files_that_read(server: LiveServer, key: str) -> None:
    """Replicate's README, unchanged but for the base URL and key."""
    c = client(server, key)
    outputs = c.run(
        "black-forest-labs/flux-schnell",
        input={"prompt": "astronaut riding a rocket like a horse"},
    )
    assert isinstance(outputs, list) and len(outputs) == 1
    for output in outputs:
        assert isinstance(output, FileOutput)
        assert output.url.startswith("data:image/png;base64,")  # sync mode: data URIs
        assert output.read().startswith(PNG_MAGIC)


def test_models_versions_and_a_run_by_version(server: LiveServer, key: str) -> None:
    c = client(server, key, FAST)
    model = c.models.get("demo/text2image")
    assert (model.owner, model.name) == ("demo", "text2image")
    version = model.latest_version
    assert version is not None and len(version.id) == 64
    schema = version.openapi_schema["components"]["schemas"]
    assert schema["Input"]["required"] == ["prompt"]
    assert schema["Input"]["properties"]["width"]["maximum"] == 2048
    assert schema["Output"]["type"] == "array"
    assert c.models.get("demo", "text2image").versions.get(version.id).id == version.id
    assert "demo/text2image" in [m.id for m in c.models.list().results]
    with pytest.raises(ReplicateError) as missing:
        c.models.get("nobody/nothing")
    assert missing.value.status == 404

    out = c.run(f"demo/text2image:{version.id}", input={"prompt": "a red fox", "width": 64})
    assert out[0].read().startswith(PNG_MAGIC)
    made = c.predictions.create(version=version.id, input={"prompt": "a fox"}, wait=True)
    assert made.status == "succeeded" and made.version == version.id
    assert made.model == "demo/text2image"


def test_a_prediction_is_the_same_job_on_v1(server: LiveServer, key: str) -> None:
    c = client(server, key, FAST)
    made = c.models.predictions.create(
        model="demo/text2image", input={"prompt": "a red fox", "num_outputs": 2}
    )
    assert made.status == "starting"
    assert made.urls is not None and made.urls["get"].endswith(f"/v1/predictions/{made.id}")
    made.wait()
    assert made.status == "succeeded", made.error
    assert isinstance(made.output, list) and len(made.output) == 2
    assert made.metrics is not None and made.metrics["predict_time"] >= 0
    assert made.logs and made.progress is not None
    assert c.predictions.get(job_id(made.id)).id == made.id  # the job id reads it too
    with server.client(key) as api:
        job = api.get(f"/v1/jobs/{job_id(made.id)}").json()
        assert job["engine"] == "demo/text2image" and job["status"] == "succeeded"
        assert job["metadata"]["compat"] == "replicate"
        assert job["input"]["num_images"] == 2
        assert [o["url"] for o in job["outputs"]] == made.output
        assert api.get(made.output[0]).content.startswith(PNG_MAGIC)
    # another account sees none of it
    other = client(server, new_key(server))
    with pytest.raises(ReplicateError) as foreign:
        other.predictions.get(made.id)
    assert foreign.value.status == 404


def test_cursor_paging(server: LiveServer, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(face, "PAGE", 2)
    c = client(server, key, FAST)
    made = [
        c.models.predictions.create(model="demo/text2image", input={"prompt": f"p{i}"}).id
        for i in range(3)
    ]
    first = c.predictions.list()
    assert [p.id for p in first.results] == made[::-1][:2]
    assert first.next is not None
    second = c.predictions.list(first.next)
    assert [p.id for p in second.results] == made[:1]
    assert second.next is None


def test_prefer_wait_not_done_in_time_answers_starting_and_cancel(
    server: LiveServer, key: str
) -> None:
    c = client(server, key, SLOW)
    made = c.models.predictions.create(model="demo/text2image", input={"prompt": "x"}, wait=1)
    assert made.status == "starting"  # replicate.run polls on only after `starting`
    made.cancel()
    poll(lambda: c.predictions.get(made.id).dict(), lambda p: p["status"] == "canceled")
    with server.client(key) as api:
        job = api.get(f"/v1/jobs/{job_id(made.id)}").json()
        assert job["status"] == "canceled" and job["credits"]["used"] == 0


def test_stream_sends_logs_output_and_done(server: LiveServer, key: str) -> None:
    c = client(server, key, FAST)
    events = list(c.stream("demo/text2image", input={"prompt": "a red fox", "width": 64}))
    kinds = [e.event.value for e in events]
    assert kinds[-1] == "done" and "output" in kinds and "logs" in kinds, kinds
    url = next(str(e.data) for e in events if e.event.value == "output")
    assert httpx.get(url).content.startswith(PNG_MAGIC)


def test_webhooks_are_signed_filtered_and_verify(
    server: LiveServer, key: str, rx: RawReceiver
) -> None:
    c = client(server, key, FAST)
    made = c.models.predictions.create(
        model="demo/text2image",
        input={"prompt": "a red fox", "width": 64},
        webhook=rx.url,
        webhook_events_filter=["completed"],
    )
    made.wait()
    headers, body = rx.wait(1)[0]
    secret = c.webhooks.default.secret()
    assert secret.key.startswith("whsec_")
    c.webhooks.validate(headers=headers, body=body, secret=secret, tolerance=300)
    sent = json.loads(body)
    assert sent["id"] == made.id and sent["status"] == "succeeded"
    assert sent["output"] == made.output
    with pytest.raises(InvalidSignatureError):
        c.webhooks.validate(headers=headers, body=body.replace(made.id, "x"), secret=secret)
    with server.client(key) as api:  # "completed" only: one delivery was ever made
        made_for = api.get(f"/v1/jobs/{job_id(made.id)}/deliveries").json()["data"]
        assert [d["event"] for d in made_for] == ["completed"]
        # `start` and `completed`: genq's `started` and `completed` events
        both = c.models.predictions.create(
            model="demo/text2image",
            input={"prompt": "a red fox", "width": 64},
            webhook=rx.url,
            webhook_events_filter=["start", "completed"],
        )
        both.wait()
        rx.wait(3)
        events = api.get(f"/v1/jobs/{job_id(both.id)}/deliveries").json()["data"]
        assert sorted(d["event"] for d in events) == ["completed", "started"]


def test_failed_prediction_raises_model_error(server: LiveServer, key: str) -> None:
    c = client(server, key)
    with pytest.raises(ModelError) as failed:
        c.run("test/boom", input={})
    assert failed.value.prediction.status == "failed"
    assert failed.value.prediction.error


def test_errors_as_the_sdk_raises_them(server: LiveServer, key: str) -> None:
    def status_of(c: replicate.Client, **kwargs: Any) -> ReplicateError:
        with pytest.raises(ReplicateError) as caught:
            c.models.predictions.create(model="demo/text2image", **kwargs)
        return caught.value

    bad = status_of(client(server, "gq_not_a_key"), input={"prompt": "x"})
    assert (bad.status, bad.title) == (401, "Unauthenticated")
    invalid = status_of(client(server, key), input={"width": 10})
    assert invalid.status == 422 and "prompt" in (invalid.detail or "")
    with pytest.raises(ReplicateError) as missing:
        client(server, key).predictions.get("01arz3ndektsv4rrffq69g5fav")
    assert missing.value.status == 404
    poor = status_of(client(server, new_key(server, plan="free", credits=0)), input={"prompt": "x"})
    assert poor.status == 402 and poor.title == "Insufficient credit"
    tiny = client(server, new_key(server, plan="tiny"), FAST)
    tiny.models.predictions.create(model="demo/text2image", input={"prompt": "x"})
    # the first create took this minute's one generation: the second is throttled
    limited = status_of(tiny, input={"prompt": "x"})
    assert limited.status == 429 and limited.title == "Request was throttled."
    raw = httpx.post(
        f"{server.url}/compat/replicate/v1/models/demo/text2image/predictions",
        json={"input": {"prompt": "x"}},
        headers=tiny._client.headers,
    )
    assert raw.status_code == 429 and int(raw.headers["retry-after"]) > 0
    assert raw.json()["detail"].startswith("Request was throttled. Expected available in")


def test_idempotency_key_replays_the_first_answer(server: LiveServer, key: str) -> None:
    url = f"{server.url}/compat/replicate/v1/models/demo/text2image/predictions"
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "rep-1", **FAST}
    body = {"input": {"prompt": "same"}}
    first = httpx.post(url, json=body, headers=headers)
    again = httpx.post(url, json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert again.headers.get("idempotent-replayed") == "true"
    other = httpx.post(url, json={"input": {"prompt": "other"}}, headers=headers)
    assert other.status_code == 422 and other.json()["status"] == 422


@pytest.mark.parametrize(
    ("state", "word"),
    [
        ("queued", "starting"),
        ("starting", "starting"),
        ("running", "processing"),
        ("succeeded", "succeeded"),
        ("failed", "failed"),
        ("canceled", "canceled"),
    ],
)
def test_status_table(state: str, word: str) -> None:
    job = {
        "id": "job_01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "status": state,
        "engine": "demo/text2image",
        "created_at": "2026-12-02T10:00:00.000Z",
        "urls": {"self": "http://h/v1/jobs/job_01ARZ3NDEKTSV4RRFFQ69G5FAV"},
    }
    body = face.render(job)
    assert body["status"] == word and body["id"] == "01arz3ndektsv4rrffq69g5fav"
    assert body["urls"]["get"] == "http://h/compat/replicate/v1/predictions/" + body["id"]


def test_an_expired_prediction_is_not_found(server: LiveServer, key: str) -> None:
    expired = expired_job(server, key)
    with pytest.raises(ReplicateError) as gone:
        client(server, key).predictions.get(expired)
    assert gone.value.status == 404
    assert expired not in [job_id(p.id) for p in client(server, key).predictions.list().results]


def test_over_https_outputs_are_urls_the_sdk_reads(
    tmp_path: Path, tls: Tls, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Served over HTTPS, output URLs are https: `replicate.run` wraps them as files,
    whether it waited (`Prefer: wait`) or polled."""
    monkeypatch.setenv("SSL_CERT_FILE", tls.ca_file)
    srv = LiveServer(make_settings(tmp_path / "data", **tls.serve), ca_file=tls.ca_file).start()
    try:
        c = client(srv, srv.new_key(), FAST)
        for wait in (True, False):
            (output,) = c.run("demo/text2image", input={"prompt": "tls", "width": 64}, wait=wait)
            assert isinstance(output, FileOutput) and output.url.startswith(srv.url + "/files/")
            assert output.read().startswith(PNG_MAGIC)
    finally:
        while _OPEN:  # (an open keep-alive connection would hold the server's stop)
            _OPEN.pop()._client.close()
        srv.stop()


def test_predictions_by_model_name_and_without_either(server: LiveServer, key: str) -> None:
    url = f"{server.url}/compat/replicate/v1/predictions"
    headers = {"Authorization": f"Bearer {key}", **FAST}
    made = httpx.post(
        url, json={"model": "demo/text2image", "input": {"prompt": "x"}}, headers=headers
    )
    assert made.status_code == 201 and made.json()["model"] == "demo/text2image"
    neither = httpx.post(url, json={"input": {"prompt": "x"}}, headers=headers)
    assert neither.status_code == 400 and neither.json()["title"] == "Bad request"
    unknown = httpx.post(url, json={"version": "f" * 64, "input": {}}, headers=headers)
    assert unknown.status_code == 404 and unknown.json()["status"] == 404
