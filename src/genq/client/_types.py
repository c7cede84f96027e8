"""Typed records of the API's JSON. Unknown fields are kept (`extra="allow"`), so a
newer server never breaks an older client; fields a server may omit have defaults."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "expired"})
"""The closed set of final job statuses: a loop that stops on these never hangs."""

T = TypeVar("T")
StrPath = str | os.PathLike[str]


class SyncDownloader(Protocol):
    def __call__(self, output: JobOutput, path: StrPath, *, overwrite: bool) -> Path: ...


class AsyncDownloader(Protocol):
    def __call__(self, output: JobOutput, path: StrPath, *, overwrite: bool) -> Awaitable[Path]: ...


class Record(BaseModel):
    """Base of every API record."""

    model_config = ConfigDict(extra="allow")


class JobError(Record):
    code: str
    message: str = ""
    retryable: bool = False


class Credits(Record):
    estimate: int = 0
    used: int = 0
    refunded: int = 0


class JobOutput(Record):
    """One output of a job. `download()` (sync client) or `await adownload()` (async
    client) saves it; both are bound to the client that fetched the job."""

    name: str
    kind: str = "other"
    url: str
    content_type: str | None = None
    bytes: int | None = None
    width: int | None = None
    height: int | None = None
    sha256: str | None = None

    _download: SyncDownloader | None = PrivateAttr(default=None)
    _adownload: AsyncDownloader | None = PrivateAttr(default=None)
    _filename: str | None = PrivateAttr(default=None)  # its file name, distinct in its job

    def download(self, path: StrPath = ".", *, overwrite: bool = False) -> Path:
        """Save the output to `path`, streaming, and return the file's path.

        `path` is a directory (an existing one, or a new path without an extension
        such as `./out`): the file is named after the output, e.g. `image_0.png`, or
        by its kind when its name is only a format (`glb` is saved as `model.glb`); a
        `filename` the server gives wins. Otherwise `path` is the file to write. The
        file appears only once complete, with the umask's permissions; an existing
        file raises FileExistsError unless `overwrite=True`."""
        if self._download is None:
            raise TypeError(
                "this output is not bound to a sync Client; use `await output.adownload()`"
                " or `client.jobs.download(output, path)`"
            )
        return self._download(self, path, overwrite=overwrite)

    async def adownload(self, path: StrPath = ".", *, overwrite: bool = False) -> Path:
        """`download()` for outputs fetched by an `AsyncClient`."""
        if self._adownload is None:
            raise TypeError(
                "this output is not bound to an AsyncClient; use `output.download()`"
                " or `client.jobs.download(output, path)`"
            )
        return await self._adownload(self, path, overwrite=overwrite)


class Job(Record):
    """A generation job (the canonical job JSON, `GET /v1/jobs/{id}`)."""

    id: str
    object: str = "job"
    engine: str
    task: str | None = None
    status: str
    progress: float = 0.0
    message: str | None = None
    queue_position: int | None = None
    eta_s: float | None = None
    input: dict[str, Any] = Field(default_factory=dict)
    outputs: list[JobOutput] = Field(default_factory=list)
    error: JobError | None = None
    credits: Credits | None = None
    parent_id: str | None = None
    model_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    expires_at: datetime | None = None
    processing_time_s: float | None = None
    urls: dict[str, str] = Field(default_factory=dict)
    seq: int | None = None  # the event sequence number of this state (resume streams here)

    @property
    def is_terminal(self) -> bool:
        """True once the job is `succeeded`, `failed`, `canceled` or `expired`."""
        return self.status in TERMINAL_STATUSES

    def output(self, name: str) -> JobOutput:
        """The output called `name` (KeyError if there is none)."""
        for out in self.outputs:
            if out.name == name:
                return out
        raise KeyError(name)


class _Page(Record):
    object: str = "list"
    data: list[Job] = Field(default_factory=list)
    has_more: bool = False
    next_cursor: str | None = None


class JobPage(_Page):
    """One page of `jobs.list`; `iter_all()` walks this and every later page."""

    _fetch: Callable[[str], JobPage] | None = PrivateAttr(default=None)

    def iter_all(self) -> Iterator[Job]:
        page: JobPage = self
        seen: set[str] = set()
        while True:
            yield from page.data
            cursor = page.next_cursor
            if not page.has_more or not cursor or cursor in seen or page._fetch is None:
                return
            seen.add(cursor)
            page = page._fetch(cursor)


class AsyncJobPage(_Page):
    """One page of `AsyncClient.jobs.list`; `async for job in page.iter_all()`."""

    _fetch: Callable[[str], Awaitable[AsyncJobPage]] | None = PrivateAttr(default=None)

    async def iter_all(self) -> AsyncIterator[Job]:
        page: AsyncJobPage = self
        seen: set[str] = set()
        while True:
            for job in page.data:
                yield job
            cursor = page.next_cursor
            if not page.has_more or not cursor or cursor in seen or page._fetch is None:
                return
            seen.add(cursor)
            page = await page._fetch(cursor)


class Listing(Record, Generic[T]):
    """`{"object": "list", "data": [...]}` without paging (engines, models)."""

    object: str = "list"
    data: list[T] = Field(default_factory=list)


class Upstream(Record):
    """Where an upstream engine's jobs run (genq as a gateway)."""

    provider: str
    base_url: str | None = None


class Engine(Record):
    """An engine: what it makes, its input JSON Schema and its price in credits."""

    name: str
    object: str = "engine"
    task: str | None = None
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=dict)
    price: float | None = None
    media: list[str] = Field(default_factory=list)
    typical_duration_s: float | None = None
    concurrency: int | None = None
    timeout_s: float | None = None
    upstream: Upstream | None = None  # set when the engine runs at an upstream service


class File(Record):
    """An uploaded input file; use its `id` as an engine input."""

    id: str
    object: str = "file"
    filename: str | None = None
    content_type: str | None = None
    bytes: int | None = None
    sha256: str | None = None
    created_at: datetime | None = None


class Model(Record):
    """A trainable model: `created`, `training`, `ready` or `failed`."""

    id: str
    object: str = "model"
    name: str
    engine: str | None = None
    status: str
    job_id: str | None = None
    created_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class Account(Record):
    """The caller's account (plan, credits and limits arrive as extra fields)."""

    id: str
    object: str = "account"
    name: str | None = None
    plan: str | None = None
    key_prefix: str | None = None
    created_at: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _key_prefix_from_key(cls, data: Any) -> Any:
        # The server may describe the key as {"key": {"prefix": ...}}.
        if isinstance(data, dict) and "key_prefix" not in data:
            key = data.get("key")
            if isinstance(key, dict) and isinstance(key.get("prefix"), str):
                return {**data, "key_prefix": key["prefix"]}
        return data
