"""`Client` and `AsyncClient`: the same core, run with blocking or awaited I/O.

The only code that differs between the two is how an effect is performed
(`_perform`) and how a generator operation is driven (`_run`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import TracebackType
from typing import Self, TypeVar, cast

import httpx

from genq.client._core import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_S,
    Await,
    CloseStream,
    Core,
    Effect,
    Emit,
    Op,
    OpenStream,
    ReadLine,
    Send,
    Sleep,
)
from genq.client._resources import (
    AccountResource,
    AsyncAccountResource,
    AsyncEngines,
    AsyncFiles,
    AsyncJobs,
    AsyncModels,
    Engines,
    Files,
    Jobs,
    Models,
)
from genq.client._types import JobOutput

T = TypeVar("T")


class Client:
    """A blocking client for a genq server.

    Args:
        base_url: the server, e.g. `http://127.0.0.1:8000`; default `$GENQ_BASE_URL`,
            else `http://127.0.0.1:8000`.
        api_key: sent as `Authorization: Bearer <key>`; default `$GENQ_API_KEY`.
        timeout: seconds (or an `httpx.Timeout`) per request; each method also takes
            `timeout=` for that call alone.
        max_retries: how many times a failed request that is safe to repeat is retried
            (connection errors, 429, 5xx), honouring `Retry-After`.
        http_client: an `httpx.Client` to send with (proxies, transports, e.g.
            `httpx.MockTransport` in tests); the caller keeps ownership of it.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout, follow_redirects=True)
        self._core = Core(
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            http=self._http,
            bind_output=self._bind_output,
        )
        self._sleep: Callable[[float], None] = time.sleep  # injectable for tests
        self.jobs = Jobs(self)
        self.engines = Engines(self)
        self.files = Files(self)
        self.models = Models(self)
        self.account = AccountResource(self)

    @property
    def base_url(self) -> httpx.URL:
        return self._core.base_url

    @property
    def api_key(self) -> str | None:
        return self._core.api_key

    def close(self) -> None:
        """Close the HTTP connection pool (not one passed in as `http_client`)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _bind_output(self, output: JobOutput) -> None:
        output._download = self.jobs.download

    def _run(self, op: Op[T]) -> T:
        box: list[T] = []
        for _ in self._iterate(op, box):
            pass
        return box[0]

    def _iterate(self, op: Op[T], box: list[T]) -> Iterator[object]:
        """Drive `op`, yielding what it emits; its result goes into `box`."""
        streams: dict[int, Iterator[str]] = {}
        opened: list[httpx.Response] = []
        try:
            effect = next(op)
            while True:
                if isinstance(effect, Emit):
                    yield effect.value
                    effect = op.send(None)
                    continue
                try:
                    result = self._perform(effect, streams, opened)
                except Exception as exc:  # the operation decides: retry, map or raise
                    effect = op.throw(exc)
                else:
                    effect = op.send(result)
        except StopIteration as stop:
            box.append(cast(T, stop.value))
        finally:
            op.close()
            for response in opened:
                response.close()

    def _perform(
        self, effect: Effect, streams: dict[int, Iterator[str]], opened: list[httpx.Response]
    ) -> object:
        if isinstance(effect, OpenStream):
            response = self._http.send(effect.request, stream=True)
            if not response.is_success:
                response.read()
                response.close()
                return response
            opened.append(response)
            streams[id(response)] = response.iter_lines()
            return response
        if isinstance(effect, ReadLine):
            return next(streams[id(effect.response)], None)
        if isinstance(effect, CloseStream):
            streams.pop(id(effect.response), None)
            effect.response.close()
            return None
        if isinstance(effect, Send):
            if effect.sink is None:
                return self._http.send(effect.request)
            response = self._http.send(effect.request, stream=True)
            try:
                if response.is_success:
                    for chunk in response.iter_bytes():
                        effect.sink.write(chunk)
                else:
                    response.read()
            finally:
                response.close()
            return response
        if isinstance(effect, Sleep):
            self._sleep(effect.seconds)
            return None
        assert isinstance(effect, Await)  # Emit is handled by _iterate
        close = getattr(effect.awaitable, "close", None)
        if callable(close):
            close()  # it will never be awaited: do not leave a dangling coroutine
        raise TypeError("on_progress returned an awaitable; use AsyncClient for async callbacks")


class AsyncClient:
    """The asyncio twin of `Client`: the same arguments, methods to `await`.

    `http_client` is an `httpx.AsyncClient`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout, follow_redirects=True)
        self._core = Core(
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            http=self._http,
            bind_output=self._bind_output,
        )
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # injectable
        self.jobs = AsyncJobs(self)
        self.engines = AsyncEngines(self)
        self.files = AsyncFiles(self)
        self.models = AsyncModels(self)
        self.account = AsyncAccountResource(self)

    @property
    def base_url(self) -> httpx.URL:
        return self._core.base_url

    @property
    def api_key(self) -> str | None:
        return self._core.api_key

    async def close(self) -> None:
        """Close the HTTP connection pool (not one passed in as `http_client`)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _bind_output(self, output: JobOutput) -> None:
        output._adownload = self.jobs.download

    async def _run(self, op: Op[T]) -> T:
        box: list[T] = []
        async for _ in self._iterate(op, box):
            pass
        return box[0]

    async def _iterate(self, op: Op[T], box: list[T]) -> AsyncIterator[object]:
        """Drive `op`, yielding what it emits; its result goes into `box`."""
        streams: dict[int, AsyncIterator[str]] = {}
        opened: list[httpx.Response] = []
        try:
            effect = next(op)
            while True:
                if isinstance(effect, Emit):
                    yield effect.value
                    effect = op.send(None)
                    continue
                try:
                    result = await self._perform(effect, streams, opened)
                except Exception as exc:  # the operation decides: retry, map or raise
                    effect = op.throw(exc)
                else:
                    effect = op.send(result)
        except StopIteration as stop:
            box.append(cast(T, stop.value))
        finally:
            op.close()
            for response in opened:
                await response.aclose()

    async def _perform(
        self, effect: Effect, streams: dict[int, AsyncIterator[str]], opened: list[httpx.Response]
    ) -> object:
        if isinstance(effect, OpenStream):
            response = await self._http.send(effect.request, stream=True)
            if not response.is_success:
                await response.aread()
                await response.aclose()
                return response
            opened.append(response)
            streams[id(response)] = response.aiter_lines()
            return response
        if isinstance(effect, ReadLine):
            return await anext(streams[id(effect.response)], None)
        if isinstance(effect, CloseStream):
            streams.pop(id(effect.response), None)
            await effect.response.aclose()
            return None
        if isinstance(effect, Send):
            if effect.sink is None:
                return await self._http.send(effect.request)
            response = await self._http.send(effect.request, stream=True)
            try:
                if response.is_success:
                    async for chunk in response.aiter_bytes():
                        effect.sink.write(chunk)
                else:
                    await response.aread()
            finally:
                await response.aclose()
            return response
        if isinstance(effect, Sleep):
            await self._sleep(effect.seconds)
            return None
        assert isinstance(effect, Await)
        return await effect.awaitable
