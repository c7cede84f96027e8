"""The fal face driven by the official `fal-client` SDK, over TLS, with only its hosts
and key changed: `FAL_QUEUE_RUN_HOST` / `FAL_RUN_HOST` point at genq's face (the SDK
reads them when it is imported, so it is imported afresh after they are set), the SDK
trusts the throwaway CA through `SSL_CERT_FILE`, and `FAL_KEY` (or `SyncClient(key=)`)
is a genq key."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib
import io
import json
import os
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from ulid import ULID

from tests.compat.conftest import FAST, PNG_MAGIC, SLOW, TINY_PLAN, Receiver
from tests.conftest import LiveServer, Tls, make_settings

APP = "fal-ai/flux/dev"


@pytest.fixture(scope="module")
def fal_server(tmp_path_factory: pytest.TempPathFactory, tls: Tls) -> Iterator[LiveServer]:
    settings = make_settings(
        tmp_path_factory.mktemp("fal") / "data",
        webhook_allow_private=True,
        webhook_retry_schedule_s=[0.2, 0.2],
        compat_engines={"fal:app:test/boom": "test/boom"},
        plans={"tiny": TINY_PLAN},
        **tls.serve,
    )
    srv = LiveServer(settings, ca_file=tls.ca_file).start()
    try:
        yield srv
    finally:
        srv.stop()


def _purge() -> None:
    for name in [m for m in sys.modules if m == "fal_client" or m.startswith("fal_client.")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def fal(fal_server: LiveServer, tls: Tls) -> Iterator[ModuleType]:
    """`fal_client`, imported with its hosts pointing at genq (what a user sets)."""
    host = fal_server.url.removeprefix("https://")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAL_QUEUE_RUN_HOST", f"{host}/compat/fal")
        mp.setenv("FAL_RUN_HOST", f"{host}/compat/fal/run")
        mp.setenv("SSL_CERT_FILE", tls.ca_file)
        mp.setenv("FAL_KEY", fal_server.new_key(f"acct-{uuid.uuid4().hex[:12]}"))
        _purge()
        module = importlib.import_module("fal_client")
        try:
            yield module
        finally:
            close(module.sync_client)
            _purge()


def close(client: Any) -> None:
    """Close a `SyncClient`'s HTTP client (the SDK never does; its sockets would leak)."""
    if "_client" in vars(client):
        client._client.close()


@pytest.fixture
def sdk(fal: ModuleType) -> Iterator[Callable[[str], Any]]:
    """`fal_client.SyncClient(key=...)`, closed after the test."""
    made: list[Any] = []

    def make(key: str) -> Any:
        made.append(fal.SyncClient(key=key))
        return made[-1]

    try:
        yield make
    finally:
        for c in made:
            close(c)


@pytest.fixture
def key(fal_server: LiveServer) -> str:
    return fal_server.new_key(f"acct-{uuid.uuid4().hex[:12]}")


def job_of(request_id: str) -> str:
    return f"job_{ULID.from_bytes(uuid.UUID(request_id).bytes)}"


def trust(server: LiveServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=server.ca_file)


def http(server: LiveServer, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Key {key}"} if key else {}
    return httpx.Client(base_url=f"{server.url}/compat/fal", headers=headers, verify=trust(server))


def download(server: LiveServer, url: str) -> bytes:
    return httpx.get(url, verify=trust(server)).content


class RawReceiver(Receiver):
    """A receiver that also keeps each body's bytes (a signature is over those)."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[bytes] = []
        handler = self.httpd.RequestHandlerClass
        receiver = self

        class Raw(handler):  # type: ignore[valid-type, misc]
            def do_POST(self) -> None:
                length = int(self.headers["content-length"])
                body = self.rfile.read(length)
                receiver.raw.append(body)
                self.rfile = io.BytesIO(body)
                super().do_POST()

        self.httpd.RequestHandlerClass = Raw


def test_readme_quickstart_run_prints_a_url_that_downloads(
    fal: ModuleType, fal_server: LiveServer
) -> None:
    response = fal.run("fal-ai/fast-sdxl", arguments={"prompt": "a cute cat"}, headers=FAST)
    url = response["images"][0]["url"]
    assert url.startswith(fal_server.url + "/files/")
    assert download(fal_server, url).startswith(PNG_MAGIC)
    assert response["prompt"] == "a cute cat"


README_QUICKSTART = """
import fal_client

response = fal_client.run("fal-ai/fast-sdxl", arguments={"prompt": "a cute cat, realistic, orange"})
print(response["images"][0]["url"])
"""


def test_readme_quickstart_verbatim_in_a_fresh_process(fal_server: LiveServer, tls: Tls) -> None:
    """The SDK README's quick-start, unchanged, with only the environment set."""
    host = fal_server.url.removeprefix("https://")
    env = {
        **os.environ,
        "FAL_KEY": fal_server.new_key(f"acct-{uuid.uuid4().hex[:12]}"),
        "FAL_RUN_HOST": f"{host}/compat/fal/run",
        "FAL_QUEUE_RUN_HOST": f"{host}/compat/fal",
        "SSL_CERT_FILE": tls.ca_file,
    }
    done = subprocess.run(
        [sys.executable, "-c", README_QUICKSTART],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    assert url.startswith(fal_server.url + "/files/")
    assert download(fal_server, url).startswith(PNG_MAGIC)


def test_submit_status_result_and_the_job_on_v1(fal: ModuleType, fal_server: LiveServer) -> None:
    handle = fal.submit(
        APP, arguments={"prompt": "a red fox", "image_size": "landscape_4_3"}, headers=FAST
    )
    assert uuid.UUID(handle.request_id)
    assert handle.status_url.startswith(f"{fal_server.url}/compat/fal/fal-ai/flux/requests/")
    result = fal.result(APP, handle.request_id)  # waits (iter_events) then reads
    image = result["images"][0]
    assert (image["width"], image["height"], image["content_type"]) == (1024, 768, "image/png")
    assert download(fal_server, image["url"]).startswith(PNG_MAGIC)
    done = fal.status(APP, handle.request_id, with_logs=True)
    assert isinstance(done, fal.Completed) and done.error is None
    assert isinstance(done.logs, list) and done.metrics["inference_time"] is not None
    with fal_server.client(os.environ["FAL_KEY"]) as api:
        job = api.get(f"/v1/jobs/{job_of(handle.request_id)}").json()
    assert job["status"] == "succeeded" and job["engine"] == "demo/text2image"
    assert job["metadata"] == {"compat": "fal", "app": APP}
    assert job["outputs"][0]["url"] == image["url"]


def test_subscribe_with_logs_and_queue_updates(
    fal: ModuleType, key: str, sdk: Callable[[str], Any]
) -> None:
    client = sdk(key)
    updates: list[Any] = []
    enqueued: list[str] = []
    result = client.subscribe(
        "fal-ai/flux/schnell",
        arguments={"prompt": "a lighthouse", "num_images": 2},
        with_logs=True,
        on_enqueue=enqueued.append,
        on_queue_update=updates.append,
        headers={"X-Genq-Input": json.dumps({"delay_s": 1.0})},
        interval=0.05,
    )
    assert len(result["images"]) == 2 and enqueued
    assert isinstance(updates[-1], fal.Completed)
    assert all(isinstance(u, fal.Queued | fal.InProgress | fal.Completed) for u in updates)
    assert any(isinstance(u, fal.InProgress) for u in updates), updates
    assert all(u.logs is not None for u in updates if not isinstance(u, fal.Queued))


def test_iter_events_status_stream_and_async_client(
    fal: ModuleType, fal_server: LiveServer, key: str, sdk: Callable[[str], Any]
) -> None:
    client = sdk(key)
    handle = client.submit("demo/text2video", arguments={"prompt": "waves"}, headers=FAST)
    events = list(handle.iter_events(with_logs=True, interval=0.05))
    assert isinstance(events[-1], fal.Completed)
    assert handle.get()["video"]["url"].endswith(".mp4")
    with (
        http(fal_server, key) as c,
        c.stream("GET", f"{handle.status_url}/stream", params={"logs": 1}) as s,
    ):
        assert s.headers["content-type"].startswith("text/event-stream")
        sent = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: ")]
    assert sent[-1]["status"] == "COMPLETED" and sent[-1]["request_id"] == handle.request_id

    async def main() -> dict[str, Any]:
        aclient = fal.AsyncClient(key=key)
        try:
            ahandle = await aclient.submit(APP, arguments={"prompt": "async"}, headers=FAST)
            out: dict[str, Any] = await ahandle.get()
        finally:
            await (await aclient._client).aclose()
        return out

    assert asyncio.run(main())["images"][0]["url"].startswith(fal_server.url)


def test_cancel_and_a_failed_request(fal: ModuleType, key: str, sdk: Callable[[str], Any]) -> None:
    client = sdk(key)
    handle = client.submit(APP, arguments={"prompt": "slow"}, headers=SLOW)
    handle.cancel()
    done = handle.status()
    while not isinstance(done, fal.Completed):
        time.sleep(0.05)
        done = handle.status()
    assert done.error == "Request was cancelled"
    with pytest.raises(fal.FalClientHTTPError) as again:
        handle.cancel()
    assert again.value.status_code == 400
    assert again.value.response.json() == {"status": "ALREADY_COMPLETED"}
    with pytest.raises(fal.FalClientHTTPError) as canceled:
        handle.get()
    assert canceled.value.status_code == 400

    boom = client.submit("test/boom", arguments={"prompt": "x"})
    with pytest.raises(fal.FalClientHTTPError) as failed:
        boom.get(interval=0.05)
    assert failed.value.status_code == 500 and failed.value.error_type
    assert isinstance(boom.status(), fal.Completed)


def test_webhook_verified_as_fal_documents(
    fal: ModuleType, fal_server: LiveServer, key: str, sdk: Callable[[str], Any]
) -> None:
    rx = RawReceiver()
    try:
        handle = sdk(key).submit(
            APP, arguments={"prompt": "hook"}, webhook_url=rx.url, headers=FAST
        )
        body = rx.wait()[0]
        headers = rx.headers[0]
    finally:
        rx.close()
    assert body["request_id"] == handle.request_id and body["status"] == "OK"
    assert body["payload"]["images"][0]["url"].startswith(fal_server.url)
    # fal's documented check: the JWKS keys, ED25519 over the four lines
    jwks = httpx.get(
        f"{fal_server.url}/compat/fal/.well-known/jwks.json", verify=trust(fal_server)
    ).json()
    stamp = int(headers["x-fal-webhook-timestamp"])
    assert abs(time.time() - stamp) <= 300
    message = "\n".join(
        (
            headers["x-fal-webhook-request-id"],
            headers["x-fal-webhook-user-id"],
            headers["x-fal-webhook-timestamp"],
            hashlib.sha256(rx.raw[0]).hexdigest(),
        )
    ).encode()
    signature = bytes.fromhex(headers["x-fal-webhook-signature"])
    verified = 0
    for k in jwks["keys"]:
        public = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(k["x"] + "=="))
        public.verify(signature, message)  # raises InvalidSignature otherwise
        verified += 1
    assert verified == 1
    assert "webhook-signature" not in headers  # fal's signature, not Standard Webhooks'


def test_errors_as_the_sdk_surfaces_them(
    fal: ModuleType,
    fal_server: LiveServer,
    key: str,
    monkeypatch: pytest.MonkeyPatch,
    sdk: Callable[[str], Any],
) -> None:
    with pytest.raises(fal.FalClientHTTPError) as e401:
        sdk("nope").submit(APP, arguments={"prompt": "x"})
    assert e401.value.status_code == 401 and e401.value.error_type == "unauthorized"
    client = sdk(key)
    with pytest.raises(fal.FalClientHTTPError) as e404:
        client.submit("nobody/nothing", arguments={"prompt": "x"})
    assert e404.value.status_code == 404
    with pytest.raises(fal.FalClientHTTPError) as e404b:
        client.status(APP, str(uuid.uuid4()))
    assert e404b.value.status_code == 404
    with pytest.raises(fal.FalClientHTTPError) as e422:
        client.submit(APP, arguments={"prompt": "x", "num_images": 9})
    assert e422.value.status_code == 422
    assert e422.value.message[0]["loc"] == ["body", "num_images"]
    with pytest.raises(fal.FalClientHTTPError) as missing:  # the engine's own check
        client.submit(APP, arguments={"image_size": "square"})
    assert missing.value.status_code == 422
    assert missing.value.message[0]["loc"] == ["body", "prompt"]
    broke = sdk(fal_server.new_key(f"poor-{uuid.uuid4().hex[:8]}", credits=0))
    with pytest.raises(fal.FalClientHTTPError) as e402:
        broke.submit(APP, arguments={"prompt": "x"}, headers=FAST)
    assert e402.value.status_code == 402
    # the SDK retries a 429 ten times with backoff (about 50 s): two attempts here
    monkeypatch.setattr(sys.modules["fal_client.client"], "MAX_ATTEMPTS", 2)
    tiny = sdk(fal_server.new_key(f"tiny-{uuid.uuid4().hex[:8]}", plan="tiny"))
    tiny.submit(APP, arguments={"prompt": "one"}, headers=FAST)
    with pytest.raises(fal.FalClientHTTPError) as e429:
        tiny.submit(APP, arguments={"prompt": "two"}, headers=FAST)
    assert e429.value.status_code == 429 and "retry-after" in e429.value.response_headers


def test_ownership_idempotency_and_bearer(
    fal: ModuleType, fal_server: LiveServer, key: str, sdk: Callable[[str], Any]
) -> None:
    client = sdk(key)
    same = {"Idempotency-Key": uuid.uuid4().hex, **FAST}
    a = client.submit(APP, arguments={"prompt": "once"}, headers=same)
    b = client.submit(APP, arguments={"prompt": "once"}, headers=same)
    assert a.request_id == b.request_id
    other = sdk(fal_server.new_key(f"other-{uuid.uuid4().hex[:8]}"))
    with pytest.raises(fal.FalClientHTTPError) as e:
        other.status(APP, a.request_id)
    assert e.value.status_code == 404
    with http(fal_server, None) as c:  # genq's Bearer works too, and the job id
        r = c.get(
            f"/fal-ai/flux/requests/{job_of(a.request_id)}/status",
            headers={"Authorization": f"Bearer {key}"},
        )
    assert r.status_code == 200 and r.json()["request_id"] == a.request_id
