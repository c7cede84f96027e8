"""Fixtures of the compat face tests: one real genq server for the package (the demo
and scenario engines, webhooks allowed to loopback receivers, a `tiny` plan to hit
rate limits, and a few operator routes), a fresh account per test, and helpers."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from PIL import Image
from ulid import ULID

from genq import lifecycle
from genq.ids import utcnow
from genq.store import Store
from tests.conftest import LiveServer, job_record, make_settings

# genq's extension header: engine input the provider has no field for (no delay here)
FAST = {"X-Genq-Input": json.dumps({"delay_s": 0})}
SLOW = {"X-Genq-Input": json.dumps({"delay_s": 20})}
ROUTES = {
    "vivix:model:boom": "test/boom",
    "vivix:model:refused": "test/moderated",
}
TINY_PLAN = {
    "generation_per_min": 1,
    "status_per_min": 1000,
    "concurrent_jobs": 2,
    "retention_days": 1,
    "monthly_credits": 1000,
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for every compat test (each test has its own account)."""
    settings = make_settings(
        tmp_path_factory.mktemp("compat") / "data",
        webhook_allow_private=True,
        webhook_retry_schedule_s=[0.2, 0.2],
        compat_engines=ROUTES,
        plans={"tiny": TINY_PLAN},
    )
    srv = LiveServer(settings).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def key(server: LiveServer) -> str:
    """A key of a fresh pro account, so tests never share limits or jobs."""
    return server.new_key(f"acct-{uuid.uuid4().hex[:12]}")


def new_key(server: LiveServer, **kwargs: Any) -> str:
    return server.new_key(f"acct-{uuid.uuid4().hex[:12]}", **kwargs)


def face(
    server: LiveServer, key: str | None, name: str, headers: dict[str, str] | None = None
) -> httpx.Client:
    h = dict(headers or {})
    if key is not None:
        h["Authorization"] = f"Bearer {key}"
    return httpx.Client(base_url=f"{server.url}/compat/{name}", headers=h, timeout=30)


def job_of(generation_id: str) -> str:
    """The genq job id of a Vivix `generation_id` (a UUID holding the job's ULID)."""
    return f"job_{ULID.from_bytes(uuid.UUID(generation_id).bytes)}"


def account_id(server: LiveServer, key: str) -> str:
    with server.client(key) as api:
        return str(api.get("/v1/account").json()["id"])


def poll(
    read: Callable[[], dict[str, Any]],
    done: Callable[[dict[str, Any]], bool],
    timeout: float = 30,
    seen: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Call `read` until `done` holds for its answer; `seen` collects every answer."""
    deadline = time.monotonic() + timeout
    while True:
        body = read()
        if seen is not None:
            seen.append(body)
        if done(body):
            return body
        assert time.monotonic() < deadline, f"still {body} after {timeout}s"
        time.sleep(0.1)


def expired_job(server: LiveServer, key: str, metadata: dict[str, Any] | None = None) -> str:
    """A job of the key's account that has expired (made through the store, as the
    retention sweeper would leave it)."""
    owner = account_id(server, key)

    async def main() -> str:
        store = Store(server.settings.db_url)
        try:
            now = utcnow()
            job, _ = await store.jobs.create(
                job_record(
                    owner,
                    engine="demo/noop",
                    metadata=metadata or {},
                    status="expired",
                    expires_at=now,
                    completed_at=now,
                ),
                lifecycle.created(),
            )
            return job.id
        finally:
            await store.close()

    return asyncio.run(main())


def check_shape(ours: dict[str, Any], seed: dict[str, Any], where: str = "") -> None:
    """Every field of a seed example is in our answer with the same JSON type
    (recursively for objects, and for the first item of arrays)."""
    for name, example in seed.items():
        assert name in ours, f"{where}{name} missing from {ours}"
        value = ours[name]
        if isinstance(example, bool) or example is None:
            assert value is None or isinstance(value, type(example)), f"{where}{name}"
        elif isinstance(example, int | float):
            assert isinstance(value, int | float) and not isinstance(value, bool), (
                f"{where}{name} is {value!r}"
            )
            if isinstance(example, float):
                assert isinstance(value, float), f"{where}{name} should be a float: {value!r}"
        else:
            assert isinstance(value, type(example)), f"{where}{name} is {value!r}"
        if isinstance(example, dict):
            check_shape(value, example, f"{where}{name}.")
        elif isinstance(example, list) and example and isinstance(example[0], dict):
            assert value, f"{where}{name} is empty"
            check_shape(value[0], example[0], f"{where}{name}[0].")


class Receiver:
    """A loopback HTTP receiver recording the bodies posted to it."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                receiver.got.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/reply"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait(self, n: int = 1, timeout: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.got) < n:
            assert time.monotonic() < deadline, f"got {len(self.got)} of {n} posts"
            time.sleep(0.05)
        return self.got

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver()
    try:
        yield rx
    finally:
        rx.close()


def png_bytes() -> bytes:
    """A small real PNG to upload."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 40, 90)).save(buf, format="PNG")
    return buf.getvalue()
