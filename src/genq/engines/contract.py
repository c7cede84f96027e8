"""The engine contract: what genq asks of an engine and what it gives one.

An engine is any object with the attributes of `Engine` and a `run(ctx)` method,
sync or async. Sync engines run in a worker thread. Everything an engine tells
genq (progress, outputs, log lines) goes through the `JobContext` it is handed;
the runtime turns those calls into the small records below and writes them to
the store, fenced on the job's lease.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

OutputKind = Literal["image", "video", "model", "thumbnail", "archive", "other"]

# An input field holding a file: an uploaded file id (`file_...`) or an earlier job's
# output (`job_.../<output name>`). genq checks at submission that the caller owns it;
# the engine opens it with `ctx.open_input(ref)`.
FileRef = Annotated[
    str,
    Field(
        pattern=r"^(file_[0-9A-Za-z]{10,40}|job_[0-9A-Za-z]{10,40}/[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$",
        json_schema_extra={"format": "genq-file"},
    ),
]
# An input field naming a trained model (`model_...`), see POST /v1/models. genq checks
# ownership and readiness at submission and hands the engine `ctx.model` (its artifact).
ModelRef = Annotated[
    str,
    Field(pattern=r"^model_[0-9A-Za-z]{10,40}$", json_schema_extra={"format": "genq-model"}),
]

TASKS = (
    "text2image",
    "image2image",
    "upscale",
    "text2video",
    "image2video",
    "text-to-3d",
    "image-to-3d",
    "train",
    "noop",
)


@runtime_checkable
class Engine(Protocol):
    """What genq needs of an engine. See `genq.engines.demo` for examples."""

    # read-only members, so that class attributes (as on EngineBase) satisfy them
    @property
    def name(self) -> str: ...  # "vendor/name", unique on the server, e.g. "demo/text2image"
    @property
    def task(self) -> str: ...  # one of TASKS (or a new word for a new kind of work)
    @property
    def input_model(self) -> type[BaseModel]: ...  # validated at submission; schema published
    @property
    def media(self) -> tuple[OutputKind, ...]: ...  # kinds of output it makes
    @property
    def price(self) -> int: ...  # credits per job (see `EngineBase.estimate`)
    @property
    def typical_duration_s(self) -> float: ...  # used for ETAs until real durations are known
    @property
    def concurrency(self) -> int: ...  # most jobs running at once, across all workers
    @property
    def timeout_s(self) -> float: ...  # the job fails with `timeout` past this

    def run(self, ctx: JobContext) -> Awaitable[None] | None: ...


class EngineBase:
    """Convenient defaults for the optional parts of `Engine`; subclass it or not."""

    name: ClassVar[str]
    task: ClassVar[str]
    input_model: ClassVar[type[BaseModel]]
    media: ClassVar[tuple[OutputKind, ...]] = ()
    description: ClassVar[str] = ""
    price: ClassVar[int] = 1
    typical_duration_s: ClassVar[float] = 5.0
    concurrency: ClassVar[int] = 4
    timeout_s: ClassVar[float] = 600.0

    def estimate(self, data: BaseModel) -> int:
        """Credits a job with this input is expected to cost."""
        return self.price


class JobCanceled(Exception):
    """Raised inside an engine by `ctx.raise_if_canceled()`: the job was canceled."""


class EngineError(Exception):
    """Raise from an engine to fail the job with a chosen code and message."""

    code = "engine_error"
    retryable = False

    def __init__(self, message: str, *, code: str | None = None, retryable: bool | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable


# -- records that flow from an engine to the runtime ---------------------------------


@dataclass(frozen=True, slots=True)
class Progress:
    pct: float
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Output:
    name: str
    kind: OutputKind
    path: Path  # where the runtime's storage put the bytes
    content_type: str
    bytes: int
    sha256: str
    meta: dict[str, Any] = field(default_factory=dict)  # width, height, duration_s, ...


@dataclass(frozen=True, slots=True)
class Log:
    level: str
    message: str


Record = Progress | Output | Log


class JobContext(Protocol):
    """What an engine gets in `run(ctx)`. Every method is safe from a thread or the loop."""

    job_id: str
    input: Any  # an instance of the engine's input_model
    model: Path | None  # artifact of the trained model the job names (model_id), if any

    @property
    def workdir(self) -> Path:
        """Scratch space, removed after the job (made on first use)."""

    @property
    def logger(self) -> logging.Logger:
        """Lines logged here become the job's `log` events."""

    def progress(self, pct: float, message: str | None = None) -> None:
        """Report progress in percent (0-100); cheap, throttled by the runtime."""

    def save_output(
        self,
        name: str,
        data_or_path: bytes | str | Path,
        content_type: str,
        *,
        kind: OutputKind | None = None,
        **meta: Any,
    ) -> Output:
        """Store one output file under a unique `name` and publish it."""

    def open_input(self, ref: str) -> Path:
        """Local path of an input file: an uploaded `file_...` id or `job_.../<output name>`."""

    def is_canceled(self) -> bool:
        """True once the job has been asked to stop."""

    def raise_if_canceled(self) -> None:
        """Raise `JobCanceled` if the job has been asked to stop."""

    def sleep(self, seconds: float) -> None:
        """Blocking sleep that ends early (raising `JobCanceled`) on cancellation."""

    async def asleep(self, seconds: float) -> None:
        """Async twin of `sleep`."""

    async def wait_canceled(self) -> None:
        """Return when the job is asked to stop."""
