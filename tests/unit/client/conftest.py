"""Fixtures: an in-memory fake server behind `httpx.MockTransport`, a fake clock whose
sleeps return at once (and are recorded), and sync/async clients wired to both."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from genq.client import AsyncClient, Client

from .fakes import API_KEY, BASE_URL, FakeServer


@dataclass
class FakeClock:
    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_client(
    server: FakeServer, clock: FakeClock, *, base_url: str = BASE_URL, api_key: str = API_KEY
) -> Client:
    http = httpx.Client(transport=httpx.MockTransport(server))
    client = Client(base_url, api_key, http_client=http)
    client._sleep = clock.sleep
    client._core.clock = clock.monotonic
    client._core.jitter = lambda: 0.0
    return client


@pytest.fixture
def client(server: FakeServer, clock: FakeClock) -> Iterator[Client]:
    with make_client(server, clock) as c:
        yield c
    c._http.close()


@pytest.fixture
async def aclient(server: FakeServer, clock: FakeClock) -> AsyncIterator[AsyncClient]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(server))
    async with AsyncClient(BASE_URL, API_KEY, http_client=http) as c:
        c._sleep = clock.asleep
        c._core.clock = clock.monotonic
        c._core.jitter = lambda: 0.0
        yield c
    await http.aclose()
