"""Resource namespaces mirroring the HTTP API (`client.jobs`, `client.engines`, ...).

Each method is a typed signature over one shared operation in `_ops`; the sync and
async twins differ only in `def` / `async def`. `timeout=` on any method except
`wait` and `run` is that request's HTTP timeout (None: the client's).
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genq.client import _ops
from genq.client._core import TimeoutArg
from genq.client._ops import FileInput, ProgressCallback, Webhook
from genq.client._sse import JobEvent
from genq.client._types import (
    Account,
    AsyncJobPage,
    Engine,
    File,
    Job,
    JobOutput,
    JobPage,
    Model,
    StrPath,
)

if TYPE_CHECKING:
    from genq.client._client import AsyncClient, Client

Status = str | Iterable[str] | None


class _Sync:
    def __init__(self, client: Client) -> None:
        self._client = client
        self._core = client._core


class _Async:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._core = client._core


class Jobs(_Sync):
    """`/v1/jobs`: submit, read, list, cancel and wait for jobs."""

    def create(
        self,
        *,
        engine: str,
        input: Mapping[str, Any] | None = None,
        webhook: Webhook | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        timeout: TimeoutArg = None,
    ) -> Job:
        """Submit a job (`POST /v1/jobs`); it is queued and returned at once. With an
        `idempotency_key` the request is retried safely on errors. `webhook` is a URL
        or `{"url": ..., "events": [...]}`."""
        return self._client._run(
            _ops.create_job(
                self._core,
                engine=engine,
                input=input or {},
                webhook=webhook,
                metadata=metadata,
                idempotency_key=idempotency_key,
                timeout=timeout,
            )
        )

    def retrieve(self, job_id: str, /, *, timeout: TimeoutArg = None) -> Job:
        """The job (`GET /v1/jobs/{id}`); revalidated with its last ETag (a 304 returns
        the cached copy)."""
        return self._client._run(_ops.retrieve_job(self._core, job_id, timeout=timeout))

    def list(
        self,
        *,
        status: Status = None,
        engine: str | None = None,
        limit: int | None = None,
        after: str | None = None,
        timeout: TimeoutArg = None,
    ) -> JobPage:
        """One page of the account's jobs, newest first; `.iter_all()` pages on."""
        page = self._client._run(
            _ops.list_jobs(
                self._core,
                JobPage,
                status=status,
                engine=engine,
                limit=limit,
                after=after,
                timeout=timeout,
            )
        )
        page._fetch = lambda cursor: self.list(
            status=status, engine=engine, limit=limit, after=cursor, timeout=timeout
        )
        return page

    def list_all(
        self, *, status: Status = None, engine: str | None = None, limit: int | None = None
    ) -> Iterator[Job]:
        """Every matching job, fetching pages of `limit` as the iteration goes."""
        yield from self.list(status=status, engine=engine, limit=limit).iter_all()

    def cancel(self, job_id: str, /, *, timeout: TimeoutArg = None) -> Job:
        """Cancel a queued or running job (`POST /v1/jobs/{id}/cancel`)."""
        return self._client._run(_ops.cancel_job(self._core, job_id, timeout=timeout))

    def wait(
        self,
        job_id: str,
        /,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        poll_interval: float | None = None,
        stream: bool = True,
    ) -> Job:
        """Block until the job is terminal and return it (whatever its status).

        Follows the job's event stream (long-polls where the server has none, or with
        `stream=False`); `on_progress(job)` is called with the first state seen
        and whenever status, progress, message or queue position change. `timeout` is
        the whole wait in seconds (None: no limit; then `WaitTimeout`).
        `poll_interval` overrides the server's `Retry-After` pacing."""
        return self._client._run(
            _ops.wait_job(
                self._core,
                job_id,
                timeout=timeout,
                on_progress=on_progress,
                poll_interval=poll_interval,
                stream=stream,
            )
        )

    def stream(self, job_id: str, /, *, after: int = 0) -> Iterator[JobEvent]:
        """The job's events as they happen (Server-Sent Events), from the start or
        after event `after`, ending with the `completed` event (whose `.job` is the
        finished job). Reconnects by itself with `Last-Event-ID`."""
        box: list[None] = []
        for event in self._client._iterate(_ops.stream_job(self._core, job_id, after=after), box):
            assert isinstance(event, JobEvent)
            yield event

    def run(
        self,
        *,
        engine: str,
        input: Mapping[str, Any] | None = None,
        webhook: Webhook | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Job:
        """`create` then `wait`; returns the succeeded job, raises `JobFailed` if it
        ended failed, canceled or expired and `WaitTimeout` after `timeout` seconds."""
        return self._client._run(
            _ops.run_job(
                self._core,
                engine=engine,
                input=input or {},
                webhook=webhook,
                metadata=metadata,
                idempotency_key=idempotency_key,
                timeout=timeout,
                on_progress=on_progress,
            )
        )

    def download(
        self,
        output: JobOutput,
        path: StrPath = ".",
        *,
        overwrite: bool = False,
        timeout: TimeoutArg = None,
    ) -> Path:
        """Stream an output to `path` (a file, or a directory: see `JobOutput.download`);
        FileExistsError if the file exists, unless `overwrite`."""
        return self._client._run(
            _ops.download(self._core, output, path, overwrite=overwrite, timeout=timeout)
        )

    def download_all(
        self, job: Job, path: StrPath = ".", *, overwrite: bool = False, timeout: TimeoutArg = None
    ) -> dict[str, Path]:
        """Stream every output of `job` into the directory `path`, each under its own
        file name (distinct within the job); returns output name -> file. Without
        `overwrite`, an existing file raises FileExistsError before anything is fetched."""
        return self._client._run(
            _ops.download_all(self._core, job, path, overwrite=overwrite, timeout=timeout)
        )


class AsyncJobs(_Async):
    """`/v1/jobs` for `AsyncClient`; see `Jobs`."""

    async def create(
        self,
        *,
        engine: str,
        input: Mapping[str, Any] | None = None,
        webhook: Webhook | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        timeout: TimeoutArg = None,
    ) -> Job:
        return await self._client._run(
            _ops.create_job(
                self._core,
                engine=engine,
                input=input or {},
                webhook=webhook,
                metadata=metadata,
                idempotency_key=idempotency_key,
                timeout=timeout,
            )
        )

    async def retrieve(self, job_id: str, /, *, timeout: TimeoutArg = None) -> Job:
        return await self._client._run(_ops.retrieve_job(self._core, job_id, timeout=timeout))

    async def list(
        self,
        *,
        status: Status = None,
        engine: str | None = None,
        limit: int | None = None,
        after: str | None = None,
        timeout: TimeoutArg = None,
    ) -> AsyncJobPage:
        page = await self._client._run(
            _ops.list_jobs(
                self._core,
                AsyncJobPage,
                status=status,
                engine=engine,
                limit=limit,
                after=after,
                timeout=timeout,
            )
        )
        page._fetch = lambda cursor: self.list(
            status=status, engine=engine, limit=limit, after=cursor, timeout=timeout
        )
        return page

    async def list_all(
        self, *, status: Status = None, engine: str | None = None, limit: int | None = None
    ) -> AsyncIterator[Job]:
        page = await self.list(status=status, engine=engine, limit=limit)
        async for job in page.iter_all():
            yield job

    async def cancel(self, job_id: str, /, *, timeout: TimeoutArg = None) -> Job:
        return await self._client._run(_ops.cancel_job(self._core, job_id, timeout=timeout))

    async def wait(
        self,
        job_id: str,
        /,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        poll_interval: float | None = None,
        stream: bool = True,
    ) -> Job:
        """See `Jobs.wait`; `on_progress` may also be an `async def`."""
        return await self._client._run(
            _ops.wait_job(
                self._core,
                job_id,
                timeout=timeout,
                on_progress=on_progress,
                poll_interval=poll_interval,
                stream=stream,
            )
        )

    async def stream(self, job_id: str, /, *, after: int = 0) -> AsyncIterator[JobEvent]:
        """The job's events as they happen; see `Jobs.stream`."""
        box: list[None] = []
        op = _ops.stream_job(self._core, job_id, after=after)
        async for event in self._client._iterate(op, box):
            assert isinstance(event, JobEvent)
            yield event

    async def run(
        self,
        *,
        engine: str,
        input: Mapping[str, Any] | None = None,
        webhook: Webhook | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Job:
        return await self._client._run(
            _ops.run_job(
                self._core,
                engine=engine,
                input=input or {},
                webhook=webhook,
                metadata=metadata,
                idempotency_key=idempotency_key,
                timeout=timeout,
                on_progress=on_progress,
            )
        )

    async def download(
        self,
        output: JobOutput,
        path: StrPath = ".",
        *,
        overwrite: bool = False,
        timeout: TimeoutArg = None,
    ) -> Path:
        return await self._client._run(
            _ops.download(self._core, output, path, overwrite=overwrite, timeout=timeout)
        )

    async def download_all(
        self, job: Job, path: StrPath = ".", *, overwrite: bool = False, timeout: TimeoutArg = None
    ) -> dict[str, Path]:
        return await self._client._run(
            _ops.download_all(self._core, job, path, overwrite=overwrite, timeout=timeout)
        )


class Engines(_Sync):
    """`/v1/engines`: what can be run, its input schema and price."""

    def list(self, *, timeout: TimeoutArg = None) -> builtins.list[Engine]:
        return self._client._run(_ops.list_engines(self._core, timeout=timeout))

    def retrieve(self, name: str, /, *, timeout: TimeoutArg = None) -> Engine:
        """One engine by name, e.g. `demo/text2image`."""
        return self._client._run(_ops.retrieve_engine(self._core, name, timeout=timeout))


class AsyncEngines(_Async):
    async def list(self, *, timeout: TimeoutArg = None) -> builtins.list[Engine]:
        return await self._client._run(_ops.list_engines(self._core, timeout=timeout))

    async def retrieve(self, name: str, /, *, timeout: TimeoutArg = None) -> Engine:
        return await self._client._run(_ops.retrieve_engine(self._core, name, timeout=timeout))


class Files(_Sync):
    """`/v1/files`: input uploads."""

    def upload(
        self,
        file: FileInput,
        /,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        timeout: TimeoutArg = None,
    ) -> File:
        """Upload a path, bytes or a binary file object (multipart field `file`); the
        content type is guessed from the name unless given."""
        return self._client._run(
            _ops.upload_file(
                self._core, file, filename=filename, content_type=content_type, timeout=timeout
            )
        )

    def retrieve(self, file_id: str, /, *, timeout: TimeoutArg = None) -> File:
        return self._client._run(_ops.retrieve_file(self._core, file_id, timeout=timeout))


class AsyncFiles(_Async):
    async def upload(
        self,
        file: FileInput,
        /,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        timeout: TimeoutArg = None,
    ) -> File:
        return await self._client._run(
            _ops.upload_file(
                self._core, file, filename=filename, content_type=content_type, timeout=timeout
            )
        )

    async def retrieve(self, file_id: str, /, *, timeout: TimeoutArg = None) -> File:
        return await self._client._run(_ops.retrieve_file(self._core, file_id, timeout=timeout))


class Models(_Sync):
    """`/v1/models`: trainable models."""

    def create(
        self,
        *,
        name: str,
        engine: str = "demo/train",
        metadata: Mapping[str, Any] | None = None,
        timeout: TimeoutArg = None,
    ) -> Model:
        return self._client._run(
            _ops.create_model(
                self._core, name=name, engine=engine, metadata=metadata, timeout=timeout
            )
        )

    def train(
        self,
        model_id: str,
        /,
        *,
        input: Mapping[str, Any] | None = None,
        timeout: TimeoutArg = None,
    ) -> Job:
        """Start training; returns the training job (wait for it with `jobs.wait`)."""
        return self._client._run(
            _ops.train_model(self._core, model_id, input=input, timeout=timeout)
        )

    def retrieve(self, model_id: str, /, *, timeout: TimeoutArg = None) -> Model:
        return self._client._run(_ops.retrieve_model(self._core, model_id, timeout=timeout))

    def list(self, *, timeout: TimeoutArg = None) -> builtins.list[Model]:
        return self._client._run(_ops.list_models(self._core, timeout=timeout))


class AsyncModels(_Async):
    async def create(
        self,
        *,
        name: str,
        engine: str = "demo/train",
        metadata: Mapping[str, Any] | None = None,
        timeout: TimeoutArg = None,
    ) -> Model:
        return await self._client._run(
            _ops.create_model(
                self._core, name=name, engine=engine, metadata=metadata, timeout=timeout
            )
        )

    async def train(
        self,
        model_id: str,
        /,
        *,
        input: Mapping[str, Any] | None = None,
        timeout: TimeoutArg = None,
    ) -> Job:
        return await self._client._run(
            _ops.train_model(self._core, model_id, input=input, timeout=timeout)
        )

    async def retrieve(self, model_id: str, /, *, timeout: TimeoutArg = None) -> Model:
        return await self._client._run(_ops.retrieve_model(self._core, model_id, timeout=timeout))

    async def list(self, *, timeout: TimeoutArg = None) -> builtins.list[Model]:
        return await self._client._run(_ops.list_models(self._core, timeout=timeout))


class AccountResource(_Sync):
    """`/v1/account`: the caller's account."""

    def retrieve(self, *, timeout: TimeoutArg = None) -> Account:
        return self._client._run(_ops.retrieve_account(self._core, timeout=timeout))


class AsyncAccountResource(_Async):
    async def retrieve(self, *, timeout: TimeoutArg = None) -> Account:
        return await self._client._run(_ops.retrieve_account(self._core, timeout=timeout))
