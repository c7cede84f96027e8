"""Every API operation, written once as a sans-I/O generator over `Core`.

The sync and async resources only choose how to run these (see `_core`).
"""

from __future__ import annotations

import inspect
import mimetypes
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import quote

import httpx

from genq.client._core import (
    Await,
    CloseStream,
    Core,
    Emit,
    Op,
    OpenStream,
    ReadLine,
    Sleep,
    TimeoutArg,
)
from genq.client._download import (
    distinct_filenames,
    download_path,
    refuse_existing,
)
from genq.client._errors import JobFailed, WaitTimeout, error_for
from genq.client._sse import JobEvent, SSEDecoder
from genq.client._types import (
    Account,
    Engine,
    File,
    Job,
    JobOutput,
    Listing,
    Model,
    StrPath,
    _Page,
)
from genq.client._wait import Poller

P = TypeVar("P", bound=_Page)
ProgressCallback = Callable[[Job], object]
FileInput = StrPath | bytes | IO[bytes]
Webhook = str | Mapping[str, Any]


def _seg(value: str) -> str:
    """One path segment (a job, file or model id), escaped."""
    return quote(value, safe="")


# -- jobs --------------------------------------------------------------------------


def create_job(
    core: Core,
    *,
    engine: str,
    input: Mapping[str, Any],
    webhook: Webhook | None,
    metadata: Mapping[str, Any] | None,
    idempotency_key: str | None,
    timeout: TimeoutArg,
) -> Op[Job]:
    body: dict[str, Any] = {"engine": engine, "input": dict(input)}
    if webhook is not None:
        body["webhook"] = {"url": webhook} if isinstance(webhook, str) else dict(webhook)
    if metadata is not None:
        body["metadata"] = dict(metadata)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    response = yield from core.request(
        "POST", "/v1/jobs", json=body, headers=headers, timeout=timeout
    )
    job = core.job(response)
    core.remember(job.id, response)
    return job


def fetch_job(
    core: Core, job_id: str, *, wait: int = 0, timeout: TimeoutArg = None
) -> Op[tuple[Job, httpx.Response]]:
    """GET the job with `If-None-Match` from the ETag cache; a 304 yields the cached
    body. `wait` > 0 asks the server to hold the answer up to that many seconds."""
    cached = core.etags.get(job_id)
    headers = {"If-None-Match": cached[0]} if cached else None
    params = {"wait": wait} if wait > 0 else None
    path = f"/v1/jobs/{_seg(job_id)}"
    response = yield from core.request(
        "GET", path, params=params, headers=headers, timeout=timeout, extra_read_s=float(wait)
    )
    if response.status_code == 304:
        if cached is not None:
            return core.job(response, cached[1]), response
        # A 304 we did not ask for (say, a shared proxy cache): ask plainly.
        response = yield from core.request("GET", path, timeout=timeout)
    core.remember(job_id, response)
    return core.job(response), response


def retrieve_job(core: Core, job_id: str, *, timeout: TimeoutArg) -> Op[Job]:
    job, _ = yield from fetch_job(core, job_id, timeout=timeout)
    return job


def list_jobs(
    core: Core,
    page_type: type[P],
    *,
    status: str | Iterable[str] | None,
    engine: str | None,
    limit: int | None,
    after: str | None,
    timeout: TimeoutArg,
) -> Op[P]:
    if limit is not None and not 1 <= limit <= 100:
        raise ValueError("limit must be between 1 and 100")
    params: dict[str, str | int] = {}
    if status:
        params["status"] = status if isinstance(status, str) else ",".join(status)
    if engine:
        params["engine"] = engine
    if limit is not None:
        params["limit"] = limit
    if after:
        params["after"] = after
    response = yield from core.request("GET", "/v1/jobs", params=params, timeout=timeout)
    page = core.parse(page_type, response)
    for job in page.data:
        core.bind(job)
    return page


def cancel_job(core: Core, job_id: str, *, timeout: TimeoutArg) -> Op[Job]:
    response = yield from core.request("POST", f"/v1/jobs/{_seg(job_id)}/cancel", timeout=timeout)
    return core.job(response)


STREAM_READ_S = 60.0  # longer than the server's keep-alive comments (15 s)


class StreamUnavailable(Exception):
    """The server has no event stream here: callers fall back to long-polling."""


def stream_job(
    core: Core, job_id: str, *, after: int = 0, deadline: float | None = None
) -> Op[None]:
    """Emit the job's events (`JobEvent`) after event `after`, until `completed`.
    A dropped stream is reopened with `Last-Event-ID`, so nothing is missed or
    repeated. Past `deadline` (a `core.clock()` time) a read ends with `WaitTimeout`."""
    last, drops = after, 0
    while True:
        read_s = STREAM_READ_S
        if deadline is not None:
            read_s = max(0.05, min(read_s, deadline - core.clock()))
        headers = {"Accept": "text/event-stream"}
        if last:
            headers["Last-Event-ID"] = str(last)
        request = core.build(
            "GET",
            f"/v1/jobs/{_seg(job_id)}/events",
            headers=headers,
            timeout=httpx.Timeout(core.timeout.connect, read=read_s, write=read_s, pool=read_s),
        )
        try:
            response = yield OpenStream(request)
            assert isinstance(response, httpx.Response)
        except httpx.TransportError as exc:
            if deadline is not None and core.clock() >= deadline:
                raise _Deadline() from exc
            drops += 1
            if drops > core.max_retries:
                raise error_for(request, exc) from exc
            yield Sleep(min(8.0, 0.5 * 2**drops))
            continue
        if response.status_code in (404, 405, 406, 501) and last == 0:
            raise StreamUnavailable(f"no event stream at {request.url}")
        if response.is_error:
            raise error_for(request, response)
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            yield CloseStream(response)
            raise StreamUnavailable(f"{request.url} is not an event stream")
        decoder = SSEDecoder()
        try:
            while (line := (yield ReadLine(response))) is not None:
                assert isinstance(line, str)
                event = decoder.feed(line)
                if event is None:
                    continue
                last, drops = event.id, 0
                if event.job is not None:
                    core.bind(event.job)
                yield Emit(event)
                if event.event == "completed":
                    yield CloseStream(response)
                    return
        except httpx.TransportError as exc:
            if deadline is not None and core.clock() >= deadline:
                raise _Deadline() from exc
        yield CloseStream(response)  # it ended early (a restart, a proxy): reconnect
        drops += 1
        yield Sleep(min(4.0, 0.1 * 2**drops))


class _Deadline(Exception):
    """The caller's deadline passed while the stream was quiet."""


def _wait_streaming(
    core: Core, job: Job, *, timeout: float | None, on_progress: ProgressCallback | None
) -> Op[Job]:
    deadline = None if timeout is None else core.clock() + timeout
    seen = (job.status, job.progress, job.message)
    try:
        events = stream_job(core, job.id, after=job.seq or 0, deadline=deadline)
        effect = next(events)
        while True:
            if isinstance(effect, Emit):
                event = effect.value
                assert isinstance(event, JobEvent)
                yield effect  # stream() callers see it too
                if event.job is not None:
                    job = event.job
                elif event.event in ("status", "progress"):
                    keys: tuple[str, ...] = ("status", "progress", "message")
                    update: dict[str, Any] = {k: event.data[k] for k in keys if k in event.data}
                    job = job.model_copy(update=update)
                if on_progress is not None and (job.status, job.progress, job.message) != seen:
                    seen = (job.status, job.progress, job.message)
                    result = on_progress(job)
                    if inspect.isawaitable(result):
                        yield Await(result)
                effect = events.send(None)
            else:
                try:
                    result = yield effect
                except Exception as exc:
                    effect = events.throw(exc)
                else:
                    effect = events.send(result)
    except StopIteration:
        return job
    except _Deadline:
        assert timeout is not None
        raise WaitTimeout(job, timeout) from None


def wait_job(
    core: Core,
    job_id: str,
    *,
    timeout: float | None,
    on_progress: ProgressCallback | None,
    poll_interval: float | None,
    stream: bool = True,
) -> Op[Job]:
    """Follow the job's event stream; fall back to long-polling where there is none
    (or when `stream` is off or `poll_interval` asks for polling)."""
    if stream and poll_interval is None:
        started = core.clock()
        job, _ = yield from fetch_job(core, job_id)
        if job.is_terminal:
            if on_progress is not None:
                result = on_progress(job)
                if inspect.isawaitable(result):
                    yield Await(result)
            return job
        if on_progress is not None:
            result = on_progress(job)
            if inspect.isawaitable(result):
                yield Await(result)
        left = None if timeout is None else max(0.0, timeout - (core.clock() - started))
        try:
            final = yield from _wait_streaming(core, job, timeout=left, on_progress=on_progress)
        except StreamUnavailable:
            pass
        else:
            return final
    poller = Poller(clock=core.clock, timeout=timeout, poll_interval=poll_interval)
    while True:
        hold = poller.hold_s()
        started = core.clock()
        job, response = yield from fetch_job(core, job_id, wait=hold)
        if poller.changed(job) and on_progress is not None:
            result = on_progress(job)
            if inspect.isawaitable(result):
                yield Await(result)
        if job.is_terminal:
            return job
        delay = poller.delay_s(response.headers, elapsed=core.clock() - started)
        if delay is None:
            assert timeout is not None
            raise WaitTimeout(job, timeout)
        if delay > 0:
            yield Sleep(delay)


def run_job(
    core: Core,
    *,
    engine: str,
    input: Mapping[str, Any],
    webhook: Webhook | None,
    metadata: Mapping[str, Any] | None,
    idempotency_key: str | None,
    timeout: float | None,
    on_progress: ProgressCallback | None,
) -> Op[Job]:
    created = yield from create_job(
        core,
        engine=engine,
        input=input,
        webhook=webhook,
        metadata=metadata,
        idempotency_key=idempotency_key,
        timeout=None,
    )
    job = yield from wait_job(
        core, created.id, timeout=timeout, on_progress=on_progress, poll_interval=None
    )
    if job.status != "succeeded":
        raise JobFailed(job)
    return job


def download(
    core: Core, output: JobOutput, path: StrPath, *, overwrite: bool, timeout: TimeoutArg
) -> Op[Path]:
    dest = download_path(output, path)
    request = core.build("GET", output.url, headers={"Accept": "*/*"}, timeout=timeout)
    yield from core.send(request, save_to=dest, overwrite=overwrite)
    return dest


def download_all(
    core: Core, job: Job, path: StrPath, *, overwrite: bool, timeout: TimeoutArg
) -> Op[dict[str, Path]]:
    """Every output of `job` into the directory `path`; without `overwrite`, refuse
    before fetching anything if one of the files exists."""
    plan = [
        (o, Path(path) / name)
        for o, name in zip(job.outputs, distinct_filenames(job.outputs), strict=True)
    ]
    if not overwrite:
        for _, dest in plan:
            refuse_existing(dest)
    for output, dest in plan:
        request = core.build("GET", output.url, headers={"Accept": "*/*"}, timeout=timeout)
        yield from core.send(request, save_to=dest, overwrite=overwrite)
    dests = {output.name: dest for output, dest in plan}
    return dests


# -- engines, files, models, account -----------------------------------------------


def list_engines(core: Core, *, timeout: TimeoutArg) -> Op[list[Engine]]:
    response = yield from core.request("GET", "/v1/engines", timeout=timeout)
    return core.parse(Listing[Engine], response).data


def retrieve_engine(core: Core, name: str, *, timeout: TimeoutArg) -> Op[Engine]:
    # Engine names hold a slash (`demo/text2image`) that the route expects as is.
    response = yield from core.request(
        "GET", f"/v1/engines/{quote(name, safe='/')}", timeout=timeout
    )
    return core.parse(Engine, response)


def upload_file(
    core: Core,
    file: FileInput,
    *,
    filename: str | None,
    content_type: str | None,
    timeout: TimeoutArg,
) -> Op[File]:
    opened: IO[bytes] | None = None
    content: bytes | IO[bytes]
    if isinstance(file, bytes):
        content, name = file, filename or "upload"
    elif isinstance(file, str | os.PathLike):
        opened = content = open(file, "rb")  # noqa: SIM115 - closed below, after sending
        name = filename or Path(file).name
    else:
        content, name = file, filename or Path(getattr(file, "name", "upload")).name
    ctype = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
    try:
        response = yield from core.request(
            "POST", "/v1/files", files={"file": (name, content, ctype)}, timeout=timeout
        )
    finally:
        if opened is not None:
            opened.close()
    return core.parse(File, response)


def retrieve_file(core: Core, file_id: str, *, timeout: TimeoutArg) -> Op[File]:
    response = yield from core.request("GET", f"/v1/files/{_seg(file_id)}", timeout=timeout)
    return core.parse(File, response)


def create_model(
    core: Core,
    *,
    name: str,
    engine: str,
    metadata: Mapping[str, Any] | None,
    timeout: TimeoutArg,
) -> Op[Model]:
    body: dict[str, Any] = {"name": name, "engine": engine}
    if metadata is not None:
        body["metadata"] = dict(metadata)
    response = yield from core.request("POST", "/v1/models", json=body, timeout=timeout)
    return core.parse(Model, response)


def train_model(
    core: Core, model_id: str, *, input: Mapping[str, Any] | None, timeout: TimeoutArg
) -> Op[Job]:
    response = yield from core.request(
        "POST",
        f"/v1/models/{_seg(model_id)}/train",
        json={"input": dict(input or {})},
        timeout=timeout,
    )
    job = core.job(response)
    core.remember(job.id, response)
    return job


def retrieve_model(core: Core, model_id: str, *, timeout: TimeoutArg) -> Op[Model]:
    response = yield from core.request("GET", f"/v1/models/{_seg(model_id)}", timeout=timeout)
    return core.parse(Model, response)


def list_models(core: Core, *, timeout: TimeoutArg) -> Op[list[Model]]:
    response = yield from core.request("GET", "/v1/models", timeout=timeout)
    return core.parse(Listing[Model], response).data


def retrieve_account(core: Core, *, timeout: TimeoutArg) -> Op[Account]:
    response = yield from core.request("GET", "/v1/account", timeout=timeout)
    return core.parse(Account, response)
