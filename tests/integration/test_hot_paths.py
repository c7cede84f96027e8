"""The reads served before FastAPI's router (`genq.api.front.Front`) answer exactly as
the FastAPI routes of the same paths do: status, headers, body, errors. Each request is
made twice against one running genq: over HTTP (the fast path) and through an app
built with `hot_paths=False` (the routes), in-process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from genq.api import create_app
from tests.conftest import LiveServer, wait_for

IGNORED = {
    "date",
    "server",
    "ratelimit",
    "content-length",
    "transfer-encoding",
}  # transport; count moves


class Twin:
    """The same requests through the fast path and through the routes."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.reference = create_app(genq=server.genq, hot_paths=False)

    def both(
        self, path: str, headers: dict[str, str] | None = None, **params: Any
    ) -> tuple[httpx.Response, httpx.Response]:
        fast = httpx.get(self.server.url + path, headers=headers, params=params, timeout=30)

        async def slow() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.reference)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await c.get(path, headers=headers, params=params, timeout=30)

        # the routes must run on the server's own loop: the store answers there
        future = asyncio.run_coroutine_threadsafe(slow(), self.server.genq.loop)
        return fast, future.result(30)

    def post_both(
        self, path: str, headers: dict[str, str], content: bytes
    ) -> tuple[httpx.Response, httpx.Response]:
        fast = httpx.post(self.server.url + path, headers=headers, content=content, timeout=30)

        async def slow() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.reference)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await c.post(path, headers=headers, content=content, timeout=30)

        return fast, asyncio.run_coroutine_threadsafe(slow(), self.server.genq.loop).result(30)

    def post_alike(self, headers: dict[str, str], content: bytes) -> int:
        """POST /v1/jobs both ways: errors are identical; a created job differs only by
        what makes it another job (id, times, URLs)."""
        fast, slow = self.post_both("/v1/jobs", headers, content)
        assert fast.status_code == slow.status_code, (fast.text, slow.text)
        if fast.status_code >= 400:
            assert {**fast.json(), "instance": None} == {**slow.json(), "instance": None}
        else:
            a, b = fast.json(), slow.json()
            assert set(a) == set(b) and a["status"] == b["status"] and a["input"] == b["input"]
        kept = set(fast.headers) - IGNORED
        assert kept == set(slow.headers) - IGNORED, (fast.headers, slow.headers)
        return fast.status_code

    def same(self, path: str, headers: dict[str, str] | None = None, **params: Any) -> int:
        fast, slow = self.both(path, headers, **params)
        assert fast.status_code == slow.status_code, (path, fast.text, slow.text)
        assert fast.content == slow.content or (
            fast.headers.get("content-type", "").startswith("application/problem+json")
            and {**fast.json(), "instance": None} == {**slow.json(), "instance": None}
        ), (path, fast.text, slow.text)
        kept = {k: v for k, v in fast.headers.items() if k not in IGNORED}
        ref = {k: v for k, v in slow.headers.items() if k not in IGNORED}
        assert kept == ref, (path, kept, ref)
        if "ratelimit-policy" in slow.headers:
            assert "ratelimit" in fast.headers
        return fast.status_code


@pytest.fixture
def twin(server: LiveServer) -> Iterator[Twin]:
    yield Twin(server)


def test_job_reads_answer_as_the_route_does(
    twin: Twin, server: LiveServer, api: httpx.Client, key: str
) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    done = api.post("/v1/jobs", json={"engine": "test/sleep", "input": {"seconds": 0.1}}).json()
    wait_for(api, done["id"])
    running = api.post(
        "/v1/jobs", json={"engine": "test/sleep", "input": {"seconds": 30, "steps": 30}}
    ).json()
    wait_for(api, running["id"], until=("running",))
    etag = api.get(f"/v1/jobs/{done['id']}").headers["etag"]
    assert twin.same(f"/v1/jobs/{done['id']}", auth) == 200
    assert twin.same(f"/v1/jobs/{done['id']}", {**auth, "If-None-Match": etag}) == 304
    assert twin.same(f"/v1/jobs/{done['id']}", {**auth, "If-None-Match": 'W/"x"'}) == 200
    assert twin.same(f"/v1/jobs/{done['id']}", auth, wait="0.2") == 200
    assert twin.same("/v1/jobs/job_01NOSUCHJOB", auth) == 404
    assert twin.same(f"/v1/jobs/{done['id']}") == 401
    assert twin.same(f"/v1/jobs/{done['id']}", {"Authorization": "Bearer gq_wrong"}) == 401
    for bad in ("-1", "61", "soon", "nan"):
        assert twin.same(f"/v1/jobs/{done['id']}", auth, wait=bad) == 422
    assert twin.same(f"/v1/jobs/{done['id']}", auth, after_seq="-2") == 422
    other = server.new_key("mallory")
    assert twin.same(f"/v1/jobs/{done['id']}", {"Authorization": f"Bearer {other}"}) == 404
    api.post(f"/v1/jobs/{running['id']}/cancel")
    wait_for(api, running["id"])
    assert api.delete(f"/v1/jobs/{done['id']}").status_code == 204
    assert twin.same(f"/v1/jobs/{done['id']}", auth) == 410


def test_job_streams_answer_as_the_route_does(twin: Twin, api: httpx.Client, key: str) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    job = api.post(
        "/v1/jobs", json={"engine": "test/sync-sleep", "input": {"seconds": 0.3, "steps": 3}}
    ).json()
    wait_for(api, job["id"])
    assert twin.same(f"/v1/jobs/{job['id']}/events", auth) == 200
    assert twin.same(f"/v1/jobs/{job['id']}/events", {**auth, "Last-Event-ID": "2"}) == 200
    assert twin.same(f"/v1/jobs/{job['id']}/events", auth, after="3") == 200
    # a resume point that is not an event id: ignored in the header, refused as `after`
    for junk in ("²", "9" * 5000, "9223372036854775808", "-1"):
        h = {**auth, "Last-Event-ID": junk} if junk.isascii() else auth
        assert twin.same(f"/v1/jobs/{job['id']}/events", h) == 200
        assert twin.same(f"/v1/jobs/{job['id']}/events", auth, after=junk) == 422
    assert twin.same("/v1/jobs/job_01NOSUCHJOB/events", auth) == 404
    assert twin.same(f"/v1/jobs/{job['id']}/events") == 401


@pytest.mark.parametrize(
    ("face", "path", "query"),
    [
        ("masterpiecex", "/compat/masterpiecex/status/{id}", {}),
        ("masterpiecex", "/compat/masterpiecex/v2/status/{id}", {}),
        ("useapi", "/compat/useapi/v1/pixverse/jobs/", {"jobid": "{id}"}),
        ("useapi", "/compat/useapi/v1/pixverse/jobs", {"jobid": "{id}"}),
        ("photogpt", "/compat/photogpt/jobs/{id}", {}),
        ("vivix", "/compat/vivix/api/v1/generations/{id}", {}),
    ],
)
def test_face_status_reads_answer_as_the_routes_do(
    twin: Twin,
    server: LiveServer,
    api: httpx.Client,
    key: str,
    face: str,
    path: str,
    query: dict[str, str],
) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    job = api.post("/v1/jobs", json={"engine": "demo/noop", "input": {}}).json()
    wait_for(api, job["id"])

    def at(job_id: str) -> tuple[str, dict[str, str]]:
        return path.format(id=job_id), {k: v.format(id=job_id) for k, v in query.items()}

    p, q = at(job["id"])
    assert twin.same(p, auth, **q) == 200
    p, q = at("job_01NOSUCHJOB")
    assert twin.same(p, auth, **q) in (400, 404)
    p, q = at(job["id"])
    assert twin.same(p, None, **q) in (401, 403)
    other = server.new_key("mallory")
    twin.same(p, {"Authorization": f"Bearer {other}"}, **q)  # 403 on vivix, 404 elsewhere
    if face == "useapi":
        assert twin.same(p, auth) == 400  # no jobid
    if face == "photogpt":
        assert twin.same(p, {**auth, "API-Version": "2"}) == 400


def test_job_creation_answers_as_the_route_does(twin: Twin, server: LiveServer, key: str) -> None:
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    noop = b'{"engine": "demo/noop", "input": {}}'
    assert twin.post_alike(auth, noop) == 202
    assert twin.post_alike({**auth, "Prefer": "wait=5"}, noop) == 200
    assert twin.post_alike({**auth, "Content-Type": "text/plain"}, noop) == 415
    assert twin.post_alike(auth, b"{not json") == 422
    assert twin.post_alike(auth, b'{"engine": "demo/noop", "input": {"nope": 1}}') == 422
    assert twin.post_alike(auth, b'{"engine": "no/such", "input": {}}') == 404
    assert twin.post_alike(auth, b'{"input": {}}') == 422
    assert twin.post_alike(auth, b"[]") == 422
    assert twin.post_alike(auth, b" " * (2 << 20)) == 413
    assert twin.post_alike({"Content-Type": "application/json"}, noop) == 401
    poor = server.new_key("poor", plan="free", credits=0)
    assert twin.post_alike({**auth, "Authorization": f"Bearer {poor}"}, noop) == 402
    # the same Idempotency-Key is one job, whichever way the retry comes
    once = {**auth, "Idempotency-Key": "twin-1"}
    fast, slow = twin.post_both("/v1/jobs", once, noop)
    assert fast.status_code == slow.status_code == 202
    assert fast.json()["id"] == slow.json()["id"]
    assert slow.headers["idempotent-replayed"] == "true"
    other = b'{"engine": "demo/noop", "input": {"delay_s": 1}}'
    fast, slow = twin.post_both("/v1/jobs", once, other)
    assert fast.status_code == slow.status_code == 422
    assert fast.json()["code"] == slow.json()["code"] == "idempotency_key_reused"
