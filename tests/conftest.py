"""Shared fixtures: a real genq server (uvicorn on a loopback port, real SQLite in a
temp dir) with the scenario engines and the demo engines, and API keys for it."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from genq.accounts import AccountService
from genq.api import create_app
from genq.core import Genq
from genq.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = "tests.scenario_engines:ENGINES"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    port = overrides.pop("port", None) or free_port()
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "port": port,
        "engines": [SCENARIOS],
        "lease_s": 3.0,
        "reaper_interval_s": 0.5,
        "poll_interval_s": 0.5,
        "cancel_grace_s": 2.0,
        "shutdown_grace_s": 2.0,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class LiveServer:
    """genq serving on a loopback port in a background thread."""

    settings: Settings
    workers: bool = True
    genq: Genq = field(init=False)
    _server: uvicorn.Server = field(init=False)
    _thread: threading.Thread = field(init=False)

    @property
    def url(self) -> str:
        return self.settings.base_url

    def start(self) -> LiveServer:
        self.genq = Genq(self.settings)
        app = create_app(genq=self.genq, workers=self.workers)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.settings.port, log_level="warning", lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)

    def new_key(self, account: str = "alice", plan: str = "pro", credits: int | None = None) -> str:
        return create_key(self.settings, account, plan, credits)

    def client(self, key: str, **kwargs: Any) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30, **kwargs
        )


def create_key(
    settings: Settings, account: str, plan: str = "pro", credits: int | None = None
) -> str:
    """A key made through the service layer on its own connection (as the CLI does)."""
    from genq.migrate import upgrade
    from genq.store import Store

    upgrade(settings.db_url)

    async def main() -> str:
        store = Store(settings.db_url)
        try:
            svc = AccountService(store, settings.plan_table)
            acct = await svc.get_or_create(account, plan, credits)
            secret, _ = await svc.create_key(acct)
            return secret
        finally:
            await store.close()

    return asyncio.run(main())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    srv = LiveServer(make_settings(tmp_path / "data")).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def key(server: LiveServer) -> str:
    return server.new_key("alice")


@pytest.fixture
def api(server: LiveServer, key: str) -> Iterator[httpx.Client]:
    with server.client(key) as c:
        yield c


def wait_for(
    api: httpx.Client,
    job_id: str,
    timeout: float = 30,
    until: tuple[str, ...] = ("succeeded", "failed", "canceled", "expired"),
) -> dict[str, Any]:
    """Poll a job until its status is in `until`."""
    deadline = time.monotonic() + timeout
    while True:
        r = api.get(f"/v1/jobs/{job_id}", params={"wait": 2})
        r.raise_for_status()
        job: dict[str, Any] = r.json()
        if job["status"] in until:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s")


def genq_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a `genq` subprocess using the test's data dir and engines."""
    env = dict(os.environ)
    env.update(
        GENQ_DATA_DIR=str(data_dir),
        GENQ_ENGINES=SCENARIOS,
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        **extra,
    )
    return env


GENQ = [sys.executable, "-m", "genq"]
