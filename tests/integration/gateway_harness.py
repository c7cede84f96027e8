"""The gateway's test bench: a genq server plays each upstream service (its
`/compat/<provider>` face is the upstream API, real HTTP on loopback, its own
database), a second genq server (the front) drives it through `GENQ_UPSTREAMS`, and a
small loopback proxy between them injects faults (429 with Retry-After, 500s, holds,
refused connections) and counts what passes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import LiveServer, free_port, make_settings

# per provider: an engine of the front, an input for it, the output kinds it makes
CASES: dict[str, tuple[str, dict[str, Any], set[str]]] = {
    "masterpiecex": ("masterpiecex/text-to-3d", {"prompt": "a chair"}, {"model"}),
    "useapi": (
        "useapi/pixverse-video",
        {"prompt": "a fox running", "style": "Realistic"},
        {"video"},
    ),
    "photogpt": ("photogpt/image", {"prompt": "a red fox"}, {"image"}),
    "vivix": ("vivix/grok-imagine-image", {"prompt": "a red fox"}, {"image"}),
}
PROVIDERS = sorted(CASES)


@dataclass
class Fault:
    """What the proxy does to the next requests matching `match` (method, path part)."""

    status: int
    times: int
    retry_after: float | None = None
    match: tuple[str, str] = ("", "")


@dataclass
class Proxy:
    """A loopback HTTP proxy in front of `target` (a base URL), in a thread."""

    target: str
    port: int = field(default_factory=free_port)
    faults: list[Fault] = field(default_factory=list)
    down: bool = False  # answer 503 to everything (the upstream is "down")
    hold: Callable[[Request], bool] | None = None  # hold matching requests (answer nothing)
    hold_after: Callable[[Request], bool] | None = None  # forward, then hold the answer
    seen: Counter[tuple[str, str]] = field(default_factory=Counter)
    log: list[tuple[str, str, int]] = field(default_factory=list)
    stamps: list[tuple[str, str, int, float]] = field(default_factory=list)  # + monotonic
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self, method: str, part: str) -> int:
        with self._lock:
            return sum(n for (m, p), n in self.seen.items() if m == method and part in p)

    def _note(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.log.append((method, path, status))
            self.stamps.append((method, path, status, time.monotonic()))

    def _fault_for(self, request: Request) -> Fault | None:
        with self._lock:
            for f in self.faults:
                m, part = f.match
                if f.times > 0 and (not m or m == request.method) and part in request.url.path:
                    f.times -= 1
                    return f
        return None

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        with self._lock:
            self.seen[(request.method, path)] += 1
        if self.down:
            self._note(request.method, path, 503)
            return Response("down", status_code=503)
        fault = self._fault_for(request)
        if fault is not None:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            self._note(request.method, path, fault.status)
            return Response(
                '{"error": "injected"}',
                status_code=fault.status,
                headers=headers,
                media_type="application/json",
            )
        if self.hold is not None and self.hold(request):
            await asyncio.sleep(3600)
        body = await request.body()
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        url = self.target.rstrip("/") + path
        if request.url.query:
            url += "?" + request.url.query
        async with httpx.AsyncClient(timeout=60) as client:
            r = await client.request(request.method, url, content=body, headers=headers)
        if self.hold_after is not None and self.hold_after(request):
            await asyncio.sleep(3600)
        self._note(request.method, path, r.status_code)
        out_headers = {
            k: v
            for k, v in r.headers.items()
            if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")
        }
        return Response(r.content, status_code=r.status_code, headers=out_headers)

    def start(self) -> Proxy:
        app = Starlette(
            routes=[
                Route(
                    "/{path:path}",
                    self._handle,
                    methods=["GET", "POST", "PUT", "DELETE", "PATCH"],
                )
            ]
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("proxy did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


def upstream_server(root: Path) -> tuple[LiveServer, str]:
    """A genq playing the upstream services, and a key of an account there."""
    srv = LiveServer(make_settings(root / "upstream", webhook_allow_private=True)).start()
    return srv, srv.new_key("gateway-buyer", plan="ultimate")


def upstream_config(
    provider: str, base: str, key: str, **options: Any
) -> dict[str, dict[str, Any]]:
    values = {
        "base_url": f"{base}/compat/{provider}",
        "api_key": key,
        "poll_s": 0.3,
        **options,
    }
    return {provider: values}


def front_server(root: Path, upstreams: dict[str, dict[str, Any]], **overrides: Any) -> LiveServer:
    values: dict[str, Any] = {"upstreams": upstreams, "upstream_tick_s": 0.1, "upstream_lease_s": 3}
    values.update(overrides)
    return LiveServer(make_settings(root / "front", **values)).start()


BIG = {"ultimate": {"concurrent_jobs": 200, "generation_per_min": 10000, "status_per_min": 100000}}


def scripted_upstream(root: Path, **overrides: Any) -> LiveServer:
    """A genq playing the upstreams whose faces run the scripted engine (see
    `gateway_engines`): the front's prompt says what the upstream job does."""
    from tests.conftest import SCENARIOS
    from tests.integration.gateway_engines import ROUTES, SCRIPTED

    values: dict[str, Any] = {
        "webhook_allow_private": True,
        "engines": [SCENARIOS, SCRIPTED],
        "compat_engines": ROUTES,
        "worker_slots": 64,
        "plans": BIG,
    }
    values.update(overrides)
    return LiveServer(make_settings(root / "scripted", **values)).start()


def scripted_input(provider: str, prompt: str) -> tuple[str, dict[str, Any]]:
    engine, data, _ = CASES[provider]
    return engine, {**data, "prompt": prompt}


def upstream_jobs(up: LiveServer, key: str) -> list[dict[str, Any]]:
    """The upstream account's jobs, as the upstream genq has them."""
    with up.client(key) as c:
        r = c.get("/v1/jobs", params={"limit": 100})
        r.raise_for_status()
        data: list[dict[str, Any]] = r.json()["data"]
        return data
