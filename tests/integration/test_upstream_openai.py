"""`openai/<model>` engines against a second genq acting as OpenAI (its
`/compat/openai/v1` face, real HTTP): the synchronous create ends the job in the
worker's slot (b64_json results as `data:` URLs, `url` results downloaded), the
service's errors as genq errors (refunded), and a kill -9 of the front `genq serve`
while the create call is out."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from starlette.requests import Request

from genq.engines.upstream.tracker import decode_data_url
from tests.conftest import LiveServer, create_key, make_settings, wait_for
from tests.integration.gateway_harness import Proxy, front_server, upstream_jobs
from tests.integration.test_gateway_crash import Front

pytestmark = pytest.mark.timeout(120)
ROUTES = {"openai:model:rude": "test/moderated", "openai:model:boom": "test/boom"}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A genq playing OpenAI (the demo engines; two models that fail)."""
    root = tmp_path_factory.mktemp("openai-up")
    srv = LiveServer(make_settings(root / "up", compat_engines=ROUTES)).start()
    try:
        yield srv
    finally:
        srv.stop()


def _config(base: str, key: str, **extra: Any) -> dict[str, dict[str, Any]]:
    return {
        "openai": {
            "base_url": f"{base}/compat/openai/v1",
            "api_key": key,
            "models": ["gpt-image-1", "dall-e-3", "rude", "boom"],
            **extra,
        }
    }


def test_images_made_at_openai_end_in_the_worker_slot(tmp_path: Path, upstream: LiveServer) -> None:
    up_key = upstream.new_key("buyer", plan="ultimate")
    front = front_server(
        tmp_path, _config(upstream.url, up_key, markup=2), admin_accounts=["alice"]
    )
    try:
        key = front.new_key("alice")
        with front.client(key) as api:
            engine = api.get("/v1/engines/openai/gpt-image-1").json()
            assert engine["upstream"]["provider"] == "openai"
            assert set(engine["input_schema"]["properties"]) >= {"prompt", "n", "size"}
            before = api.get("/v1/account").json()["balance"]
            ids = {}
            for name, data in (
                ("gpt-image-1", {"prompt": "a red fox", "n": 2, "size": "256x256"}),
                ("dall-e-3", {"prompt": "a blue fox", "size": "256x256"}),
                ("rude", {"prompt": "something rude"}),
                ("boom", {"prompt": "anything"}),
                ("gpt-image-1", {"prompt": "x", "size": "huge"}),
            ):
                r = api.post("/v1/jobs", json={"engine": f"openai/{name}", "input": data})
                if name == "gpt-image-1" and data["size"] == "huge":
                    assert r.status_code == 422, r.text  # the engine's schema says no
                    continue
                assert r.status_code == 202, r.text
                ids[name] = r.json()["id"]
            jobs = {name: wait_for(api, job_id, timeout=60) for name, job_id in ids.items()}
            after = api.get("/v1/account").json()["balance"]

            b64 = jobs["gpt-image-1"]
            assert b64["status"] == "succeeded", b64["error"]
            assert [o["name"] for o in b64["outputs"]] == ["image_0", "image_1"]
            for out in b64["outputs"]:
                assert out["kind"] == "image" and out["content_type"] == "image/png"
                got = httpx.get(out["url"])
                assert Image.open(io.BytesIO(got.content)).size == (256, 256)
                assert out["url"].startswith(front.url)  # copied into the front's storage
            url = jobs["dall-e-3"]
            assert url["status"] == "succeeded", url["error"]
            (out,) = url["outputs"]
            assert Image.open(io.BytesIO(httpx.get(out["url"]).content)).size == (256, 256)
            assert out["url"].startswith(front.url)

            assert jobs["rude"]["status"] == "failed"
            assert jobs["rude"]["error"]["code"] == "moderated", jobs["rude"]["error"]
            assert jobs["boom"]["status"] == "failed"
            assert jobs["boom"]["error"]["code"] == "upstream_failed", jobs["boom"]["error"]
            assert "exploded" in jobs["boom"]["error"]["message"]
            charged = sum(j["credits"]["used"] for j in jobs.values())
            assert after == before - charged
            assert jobs["rude"]["credits"]["used"] == jobs["boom"]["credits"]["used"] == 0
            stats = api.get("/v1/upstreams").json()
        made = upstream_jobs(upstream, up_key)
        assert len(made) == 4  # one upstream job each, no status reads, no retries
        assert all(j["metadata"]["compat"] == "openai" for j in made)
        (openai,) = [u for u in stats["data"] if u["provider"] == "openai"]
        assert openai["status_polls"] == 0
    finally:
        front.stop()


def test_a_bad_key_fails_the_job_unauthorized_and_refunds(
    tmp_path: Path, upstream: LiveServer
) -> None:
    front = front_server(tmp_path, _config(upstream.url, "gq_wrong"))
    try:
        key = front.new_key("bob")
        with front.client(key) as api:
            before = api.get("/v1/account").json()["balance"]
            r = api.post("/v1/jobs", json={"engine": "openai/dall-e-3", "input": {"prompt": "a"}})
            job = wait_for(api, r.json()["id"], timeout=30)
            assert job["status"] == "failed"
            assert job["error"]["code"] == "upstream_unauthorized", job["error"]
            assert api.get("/v1/account").json()["balance"] == before
    finally:
        front.stop()


def test_data_urls_decode() -> None:
    raw = b"\x89PNG\r\n\x1a\nbytes"
    assert decode_data_url("data:image/png;base64," + base64.b64encode(raw).decode()) == (
        "image/png",
        raw,
    )
    assert decode_data_url("data:,a%20b") == ("text/plain", b"a b")


def _first_post() -> Callable[[Request], bool]:
    """True for the first POST only (the create call; the one sent again passes)."""
    seen = [0]

    def match(request: Request) -> bool:
        if request.method != "POST":
            return False
        seen[0] += 1
        return seen[0] == 1

    return match


def test_kill_9_while_the_synchronous_create_is_out(tmp_path: Path, upstream: LiveServer) -> None:
    """The front is killed after its create call reached OpenAI (the job is made there)
    and before the answer came back. With `idempotent` (as genq's face is) the
    restarted front sends the create again with the same Idempotency-Key and gets the
    first answer: one upstream job, the job succeeds and is charged once."""
    up_key = upstream.new_key("buyer-crash", plan="ultimate")
    proxy = Proxy(upstream.url).start()
    proxy.hold_after = _first_post()  # forwarded; its answer never comes back
    front = Front(tmp_path, _config(proxy.url, up_key, idempotent=True, poll_s=0.3))
    key = create_key(make_settings(front.dir, port=front.port), "alice", "pro", 1000)
    try:
        front.start()
        with httpx.Client(
            base_url=front.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as api:
            before = api.get("/v1/account").json()["balance"]
            r = api.post(
                "/v1/jobs", json={"engine": "openai/gpt-image-1", "input": {"prompt": "a fox"}}
            )
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            made = wait_until(lambda: upstream_jobs(upstream, up_key), "no upstream job")
            assert len(made) == 1
            front.kill()
            proxy.hold_after = None
            front.start()
            job = wait_for(api, job_id, timeout=60)
            after = api.get("/v1/account").json()["balance"]
        assert job["status"] == "succeeded", (job["error"], front.logs()[-3000:])
        assert job["outputs"] and job["outputs"][0]["kind"] == "image"
        assert len(upstream_jobs(upstream, up_key)) == 1  # never a second paid job
        # the first, and the same again (once more when the upstream still held the first
        # under that key: it answers 409 with Retry-After until the first one ends)
        assert 2 <= proxy.count("POST", "/images/generations") <= 4
        assert after == before - job["credits"]["used"]
    finally:
        front.stop()
        proxy.stop()


def wait_until(read: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = read()
        if got:
            return got
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
