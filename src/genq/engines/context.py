"""The one implementation of `JobContext`, shared by the worker runtime and by tests.

It turns an engine's calls into records (`Progress`, `Output`, `Log`) handed to a
`sink` callable; the worker's sink writes them to the store under the job's lease,
`run_local` just collects them. Files are written straight into `output_dir`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import inspect
import logging
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from threadpoolctl import threadpool_limits

from genq.engines.contract import (
    Engine,
    JobCanceled,
    Log,
    Output,
    OutputKind,
    Progress,
    Record,
)
from genq.errors import InvalidInput
from genq.payloads import METADATA_MAX_DEPTH, check_json, check_text, clean_text

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_EXT = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "video/mp4": ".mp4",
    "model/gltf-binary": ".glb",
    "model/vnd.usdz+zip": ".usdz",
    "application/octet-stream": ".bin",
    "application/json": ".json",
    "text/plain": ".txt",
    "application/zip": ".zip",
}
_FBX = "application/vnd.autodesk.fbx"
_EXT[_FBX] = ".fbx"


def kind_of(content_type: str) -> OutputKind:
    """Default output kind for a content type."""
    major = content_type.split("/", 1)[0]
    if major == "image":
        return "image"
    if major == "video":
        return "video"
    if major == "model" or content_type == _FBX:
        return "model"
    if content_type in ("application/zip", "application/x-tar", "application/gzip"):
        return "archive"
    return "other"


def extension_for(content_type: str) -> str:
    return _EXT.get(content_type, "")


class _RecordHandler(logging.Handler):
    def __init__(self, ctx: Context) -> None:
        super().__init__(logging.INFO)
        self.ctx = ctx

    def emit(self, record: logging.LogRecord) -> None:
        self.ctx._emit(Log(record.levelname.lower(), record.getMessage()))


class Context:
    """A job's context. `sink` receives each record; it must be thread-safe."""

    def __init__(
        self,
        *,
        job_id: str,
        input: BaseModel,
        output_dir: Path,
        sink: Callable[[Record], None],
        resolve_input: Callable[[str], Path] | None = None,
        model: Path | None = None,
        workdir: Path | None = None,
    ) -> None:
        self.job_id = job_id
        self.input = input
        self.model = model
        self._output_dir = output_dir
        self._sink = sink
        self._resolve_input = resolve_input
        self._names: set[str] = set()
        self._lock = threading.Lock()
        self._canceled = threading.Event()
        self._async_canceled: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._own_workdir = workdir is None
        self._workdir = workdir
        self._logger: logging.Logger | None = None
        self._handler: _RecordHandler | None = None

    @property
    def workdir(self) -> Path:
        """Scratch space, removed after the job (made on first use: most jobs need
        none, and a directory made and removed per job costs more than a quick job)."""
        if self._workdir is None:
            with self._lock:
                if self._workdir is None:
                    self._workdir = Path(tempfile.mkdtemp(prefix=f"genq-{self.job_id}-"))
        return self._workdir

    @property
    def logger(self) -> logging.Logger:
        """Lines logged here become the job's `log` events (made on first use)."""
        if self._logger is None:
            with self._lock:
                if self._logger is None:
                    # not logging.getLogger: that would keep one logger per job forever
                    logger = logging.Logger(f"genq.job.{self.job_id}")
                    logger.propagate = False
                    logger.setLevel(logging.INFO)
                    self._handler = _RecordHandler(self)
                    logger.addHandler(self._handler)
                    self._logger = logger
        return self._logger

    # -- what an engine calls -----------------------------------------------------

    def progress(self, pct: float, message: str | None = None) -> None:
        pct = max(0.0, min(100.0, float(pct)))
        self._emit(Progress(round(pct, 2), None if message is None else clean_text(message)))

    def save_output(
        self,
        name: str,
        data_or_path: bytes | str | Path,
        content_type: str,
        *,
        kind: OutputKind | None = None,
        **meta: Any,
    ) -> Output:
        if not _NAME.match(name):
            raise ValueError(f"invalid output name {name!r}")
        try:
            check_text(content_type, "content_type")
            check_json(meta, "metadata", max_depth=METADATA_MAX_DEPTH)
        except InvalidInput as exc:
            raise ValueError(f"output {name!r}: {exc.detail}") from None
        with self._lock:
            if name in self._names:
                raise ValueError(f"output name {name!r} used twice in job {self.job_id}")
            self._names.add(name)
        self._output_dir.mkdir(parents=True, exist_ok=True)
        target = self._output_dir / f"{name}{extension_for(content_type)}"
        digest = hashlib.sha256()
        if isinstance(data_or_path, bytes):
            target.write_bytes(data_or_path)
            digest.update(data_or_path)
        else:
            shutil.copyfile(data_or_path, target)
            with target.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
        out = Output(
            name=name,
            kind=kind or kind_of(content_type),
            path=target,
            content_type=content_type,
            bytes=target.stat().st_size,
            sha256=digest.hexdigest(),
            meta={k: v for k, v in meta.items() if v is not None},
        )
        self._emit(out)
        return out

    def open_input(self, ref: str) -> Path:
        if self._resolve_input is None:
            raise LookupError(f"no input resolver: cannot open {ref!r}")
        return self._resolve_input(ref)

    def is_canceled(self) -> bool:
        return self._canceled.is_set()

    def raise_if_canceled(self) -> None:
        if self._canceled.is_set():
            raise JobCanceled(self.job_id)

    def sleep(self, seconds: float) -> None:
        if self._canceled.wait(max(0.0, seconds)):
            raise JobCanceled(self.job_id)

    async def asleep(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(max(0.0, seconds)):
                await self.wait_canceled()
        except TimeoutError:
            return
        raise JobCanceled(self.job_id)

    async def wait_canceled(self) -> None:
        event = self._bind_loop()
        await event.wait()

    # -- what the runtime calls ---------------------------------------------------

    def cancel(self) -> None:
        """Ask the engine to stop; wakes `sleep`, `asleep` and `wait_canceled`."""
        self._canceled.set()
        if self._async_canceled is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._async_canceled.set)

    def close(self) -> None:
        """Stop accepting records (a late thread's calls are dropped) and clean up."""
        self.stop()
        self.remove_workdir()

    def stop(self) -> None:
        """Stop accepting records: a late thread's calls are dropped."""
        self._closed = True
        if self._logger is not None and self._handler is not None:
            self._logger.removeHandler(self._handler)

    def remove_workdir(self) -> None:
        """Remove the work directory this context made (blocking file work)."""
        if self._own_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def _bind_loop(self) -> asyncio.Event:
        if self._async_canceled is None:
            self._loop = asyncio.get_running_loop()
            self._async_canceled = asyncio.Event()
            if self._canceled.is_set():
                self._async_canceled.set()
        return self._async_canceled

    def _emit(self, record: Record) -> None:
        if not self._closed:
            self._sink(record)


def _is_async(engine: Engine) -> bool:
    return inspect.iscoroutinefunction(engine.run)


def limit_native_threads() -> None:
    """One thread per BLAS/OpenMP call: a worker runs several engines at once, and
    OpenBLAS's own thread pool, entered from several threads, oversubscribes the cores
    and can spin for minutes. Process-wide; called when a worker starts."""
    threadpool_limits(limits=1)


def _settle(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)


async def call_engine(engine: Engine, ctx: Context) -> None:
    """Run `engine.run(ctx)`; a synchronous engine runs in a daemon thread of its own,
    so that one which ignores cancellation can be abandoned (its context is closed)
    without holding the process open at exit."""
    if _is_async(engine):
        await engine.run(ctx)  # type: ignore[misc]
        return
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    context = contextvars.copy_context()

    def target() -> None:
        error: BaseException | None = None
        try:
            context.run(engine.run, ctx)
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
            loop.call_soon_threadsafe(_settle, fut, error)

    threading.Thread(target=target, name=f"engine-{ctx.job_id}", daemon=True).start()
    await fut


def run_local(
    engine: Engine,
    input: dict[str, Any] | BaseModel,
    output_dir: Path,
    *,
    resolve_input: Callable[[str], Path] | None = None,
    model: Path | None = None,
) -> list[Record]:
    """Run an engine outside the server (tests, notebooks); returns the records it made."""
    data = input if isinstance(input, BaseModel) else engine.input_model.model_validate(input)
    records: list[Record] = []
    lock = threading.Lock()

    def sink(rec: Record) -> None:
        with lock:
            records.append(rec)

    limit_native_threads()
    ctx = Context(
        job_id=f"job_local{int(time.time() * 1000)}",
        input=data,
        output_dir=output_dir,
        sink=sink,
        resolve_input=resolve_input,
        model=model,
    )
    try:
        asyncio.run(call_engine(engine, ctx))
    finally:
        ctx.close()
    return records
