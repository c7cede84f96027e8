"""The shared, sans-I/O core of `Client` and `AsyncClient`.

Every operation is written once, as a generator that yields *effects* (`Send` a
request, `Sleep`, `Await` a user callback's coroutine) and receives their results.
`Client` runs it with blocking I/O, `AsyncClient` with `await`; nothing else is
twinned. Request building, error mapping, retries, ETags and waiting all live here
and in `_ops`, so the two clients cannot drift apart.
"""

from __future__ import annotations

import os
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from genq.client._download import FileSink, distinct_filenames
from genq.client._errors import APIResponseValidationError, error_for
from genq.client._retry import next_retry
from genq.client._types import Job, JobOutput
from genq.client._version import __version__

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_RETRIES = 2
ETAG_CACHE_SIZE = 1024

TimeoutArg = float | httpx.Timeout | None


@dataclass(frozen=True, slots=True)
class Send:
    """Send `request`; with `sink`, stream a successful body into it. Result: the
    response, its body read (or, with a sink, consumed) and the stream closed."""

    request: httpx.Request
    sink: FileSink | None = None


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Await:
    """Await a coroutine a user callback returned (async client only)."""

    awaitable: Awaitable[object]


@dataclass(frozen=True, slots=True)
class OpenStream:
    """Send `request` and keep the body open. Result: the response; a non-2xx one
    comes back with its body read and closed."""

    request: httpx.Request


@dataclass(frozen=True, slots=True)
class ReadLine:
    """Result: the next line of an open stream's body, or None at its end."""

    response: httpx.Response


@dataclass(frozen=True, slots=True)
class CloseStream:
    response: httpx.Response


@dataclass(frozen=True, slots=True)
class Emit:
    """Hand a value to whoever iterates the operation (`jobs.stream`)."""

    value: object


Effect = Send | Sleep | Await | OpenStream | ReadLine | CloseStream | Emit
Op = Generator[Effect, object, T]


class ETagCache:
    """The last (ETag, body) seen per job id, least recently used evicted first."""

    def __init__(self, size: int = ETAG_CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[str, tuple[str, bytes]] = OrderedDict()

    def get(self, key: str) -> tuple[str, bytes] | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: str, etag: str, body: bytes) -> None:
        self._items[key] = (etag, body)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


def to_timeout(value: float | httpx.Timeout | None) -> httpx.Timeout:
    return value if isinstance(value, httpx.Timeout) else httpx.Timeout(value)


class Core:
    """Configuration and state shared by a client's operations.

    `http` is only used to *build* requests (so a caller's `http_client` defaults,
    e.g. extra headers, apply); the client sends them.
    """

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        timeout: float | httpx.Timeout,
        max_retries: int,
        http: httpx.Client | httpx.AsyncClient,
        bind_output: Callable[[JobOutput], None],
    ) -> None:
        base = base_url or os.environ.get("GENQ_BASE_URL") or DEFAULT_BASE_URL
        self.base_url = httpx.URL(base.rstrip("/"))
        self.api_key = api_key if api_key is not None else os.environ.get("GENQ_API_KEY")
        self.timeout = to_timeout(timeout)
        self.max_retries = max_retries
        self.http = http
        self.bind_output = bind_output
        self.etags = ETagCache()
        # Injectable for tests: the wait loop's clock and the backoff jitter.
        self.clock: Callable[[], float] = time.monotonic
        self.jitter: Callable[[], float] = random.random

    # -- building requests -------------------------------------------------------

    def url(self, path: str) -> httpx.URL:
        """An API path (`/v1/...`, joined to the base URL as is, so an engine name's
        slash stays a slash) or an absolute URL."""
        if path.startswith(("http://", "https://")):
            return httpx.URL(path)
        return httpx.URL(str(self.base_url) + path)

    def same_origin(self, url: httpx.URL) -> bool:
        return (url.scheme, url.host, url.port) == (
            self.base_url.scheme,
            self.base_url.host,
            self.base_url.port,
        )

    def build(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int | float] | None = None,
        json: object = None,
        files: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: TimeoutArg = None,
        extra_read_s: float = 0.0,
    ) -> httpx.Request:
        url = self.url(path)
        h = {"User-Agent": f"genq-python/{__version__}", "Accept": "application/json"}
        # Output URLs may point at another host (a CDN, a provider): never leak the key.
        if self.api_key and self.same_origin(url):
            h["Authorization"] = f"Bearer {self.api_key}"
        h.update(headers or {})
        t = self.timeout if timeout is None else to_timeout(timeout)
        if extra_read_s and t.read is not None:
            t = httpx.Timeout(
                connect=t.connect, read=t.read + extra_read_s, write=t.write, pool=t.pool
            )
        return self.http.build_request(
            method, url, params=params, json=json, files=files, headers=h, timeout=t
        )

    # -- sending, with retries ---------------------------------------------------

    def send(
        self, request: httpx.Request, *, save_to: Path | None = None, overwrite: bool = False
    ) -> Op[httpx.Response]:
        """Send `request`, retrying what is safe to retry; raise the mapped error for a
        4xx/5xx or a transport failure. With `save_to`, stream a successful body there
        (FileExistsError if a file is there, unless `overwrite`)."""
        attempt = 0
        while True:
            sink = FileSink(save_to, overwrite=overwrite) if save_to is not None else None
            outcome: httpx.Response | httpx.TransportError
            try:
                result = yield Send(request, sink)
                assert isinstance(result, httpx.Response)
                outcome = result
            except httpx.TransportError as exc:
                outcome = exc
            except BaseException:  # closed or failed mid-download: leave no file
                if sink is not None:
                    sink.discard()
                raise
            if isinstance(outcome, httpx.Response) and not outcome.is_error:
                if sink is None:
                    return outcome  # 2xx, or a 304 for the caller to handle
                if outcome.is_success:
                    sink.commit()
                    return outcome
            if sink is not None:
                sink.discard()
            delay = next_retry(
                request,
                outcome,
                attempt=attempt,
                max_retries=self.max_retries,
                jitter=self.jitter(),
            )
            if delay is None:
                cause = outcome if isinstance(outcome, Exception) else None
                raise error_for(request, outcome) from cause
            yield Sleep(delay)
            attempt += 1

    def request(self, method: str, path: str, **kwargs: Any) -> Op[httpx.Response]:
        return self.send(self.build(method, path, **kwargs))

    # -- parsing -----------------------------------------------------------------

    def parse(self, model: type[M], response: httpx.Response, body: bytes | None = None) -> M:
        try:
            return model.model_validate_json(response.content if body is None else body)
        except ValidationError as exc:
            raise APIResponseValidationError(
                f"unexpected {model.__name__} body from {response.request.url}: {exc}",
                response=response,
            ) from exc

    def job(self, response: httpx.Response, body: bytes | None = None) -> Job:
        return self.bind(self.parse(Job, response, body))

    def bind(self, job: Job) -> Job:
        """Make output URLs absolute, name their files (distinct within the job) and bind
        the outputs' `download` to this client."""
        for output in job.outputs:
            output.url = str(self.base_url.join(output.url))
        for output, filename in zip(job.outputs, distinct_filenames(job.outputs), strict=True):
            output._filename = filename
            self.bind_output(output)
        return job

    def remember(self, job_id: str, response: httpx.Response) -> None:
        etag = response.headers.get("etag")
        if etag:
            self.etags.put(job_id, etag, response.content)
