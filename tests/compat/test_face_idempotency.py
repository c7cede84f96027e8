"""The faces' creates honour `Idempotency-Key` as `POST /v1/jobs` does: the same key
and body replay the first answer and make no second job; another body is 422; a twin
in flight is 409 with `Retry-After`; a job whose answer was lost is answered as the
face's create answers. Every answer in the face's own shape."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from genq import lifecycle
from genq.idempotency import request_hash
from genq.store import Store
from tests.compat.conftest import FAST, account_id, face, job_of, png_bytes
from tests.conftest import LiveServer, job_record

IdOf = Callable[[dict[str, Any]], str]
CREATES: list[tuple[str, str, dict[str, Any], int, IdOf]] = [
    ("masterpiecex", "/functions/general", {"prompt": "a teapot"}, 200, lambda b: b["requestId"]),
    (
        "useapi",
        "/v1/pixverse/create",
        {"prompt": "waves", "style": "Anime"},
        200,
        lambda b: b["jobid"],
    ),
    ("photogpt", "/images/generation", {"prompt": "a kite"}, 200, lambda b: b["result"]["jobId"]),
    (
        "vivix",
        "/api/v1/generate",
        {"model": "grok-imagine-image", "prompt": "a fox"},
        201,
        lambda b: job_of(b["generation_id"]),
    ),
]
IDS = [c[0] for c in CREATES]


def jobs_of(server: LiveServer, key: str) -> list[str]:
    with server.client(key) as api:
        return [j["id"] for j in api.get("/v1/jobs").json()["data"]]


def face_shaped(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"  # not problem+json
    body: dict[str, Any] = r.json()
    assert "error" in body and "type" not in body, body
    return body


@pytest.mark.parametrize(("name", "path", "body", "status", "id_of"), CREATES, ids=IDS)
def test_the_same_key_and_body_replay_the_first_answer(
    server: LiveServer,
    key: str,
    name: str,
    path: str,
    body: dict[str, Any],
    status: int,
    id_of: IdOf,
) -> None:
    with face(server, key, name, FAST) as client:
        once = {"Idempotency-Key": f"{name}-1"}
        first = client.post(path, json=body, headers=once)
        assert first.status_code == status, first.text
        assert "idempotent-replayed" not in first.headers
        again = client.post(path, json=body, headers=once)
        assert again.status_code == status and again.content == first.content
        assert again.headers["idempotent-replayed"] == "true"
        assert jobs_of(server, key) == [id_of(first.json())]
        other = client.post(path, json={**body, "prompt": "another"}, headers=once)
        face_shaped(other, 422)
        assert jobs_of(server, key) == [id_of(first.json())]
        # without a key, or with another, each request is a job of its own
        client.post(path, json=body)
        client.post(path, json=body, headers={"Idempotency-Key": f"{name}-2"})
        assert len(jobs_of(server, key)) == 3


@pytest.mark.parametrize(("name", "path", "body", "status", "id_of"), CREATES, ids=IDS)
def test_a_twin_in_flight_and_a_lost_answer(
    server: LiveServer,
    key: str,
    name: str,
    path: str,
    body: dict[str, Any],
    status: int,
    id_of: IdOf,
) -> None:
    raw = json.dumps(body).encode()
    fingerprint = request_hash("POST", f"/compat/{name}{path}", raw)
    owner = account_id(server, key)

    async def held_elsewhere() -> str:
        """'busy' held by a request in flight; 'lost' by one that made its job and died
        before answering. The job's id."""
        store = Store(server.settings.db_url)
        try:
            begin = store.idempotency.begin
            await begin(owner, "busy", fingerprint, secrets.token_hex(16), ttl_s=60, lease_s=30)
            token = secrets.token_hex(16)
            await begin(owner, "lost", fingerprint, token, ttl_s=60, lease_s=0.05)
            job, _ = await store.jobs.create(
                job_record(owner, engine="demo/noop", metadata={"compat": name}),
                lifecycle.created(),
                (owner, "lost", token),
            )
            return job.id
        finally:
            await store.close()

    made = asyncio.run(held_elsewhere())
    time.sleep(0.1)  # the 'lost' request's lease lapses
    headers = {"Content-Type": "application/json"}
    with face(server, key, name) as client:
        busy = client.post(path, content=raw, headers={**headers, "Idempotency-Key": "busy"})
        face_shaped(busy, 409)
        assert int(busy.headers["retry-after"]) >= 1
        lost = client.post(path, content=raw, headers={**headers, "Idempotency-Key": "lost"})
        assert lost.status_code == status, lost.text
        assert lost.headers["idempotent-replayed"] == "true"
        assert id_of(lost.json()) == made
    assert jobs_of(server, key) == [made]


def test_a_multipart_create_is_replayed_too(server: LiveServer, key: str) -> None:
    """The same request bytes (a retry of one multipart body) make one job."""
    form = httpx.Request(
        "POST",
        "http://x/",
        data={"prompt": "waves"},
        files={"image": ("sea.png", png_bytes(), "image/png")},
    )
    raw = form.read()
    headers = {"Content-Type": form.headers["content-type"], "Idempotency-Key": "form-1"}
    with face(server, key, "useapi", FAST) as ua:
        first = ua.post("/v1/pixverse/animate", content=raw, headers=headers)
        assert first.status_code == 200, first.text
        assert first.json()["image"]["size"] == len(png_bytes())
        again = ua.post("/v1/pixverse/animate", content=raw, headers=headers)
        assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    assert jobs_of(server, key) == [first.json()["jobid"]]
