"""Tiny engines, one per scenario, for the server tests (cog's habit: fixtures that
are real engines beat mocks)."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from genq.engines.contract import EngineBase, EngineError, FileRef, JobContext


class SleepInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(0.0, ge=0, le=120)
    steps: int = Field(4, ge=1, le=100)
    text: str = "hello"


class Sleeper(EngineBase):
    """Sleeps in steps (cancellable), reports progress, writes one text output."""

    name = "test/sleep"
    task = "noop"
    input_model = SleepInput
    price = 3
    typical_duration_s = 1.0
    concurrency = 2

    async def run(self, ctx: JobContext) -> None:
        data: SleepInput = ctx.input
        for i in range(data.steps):
            ctx.progress(100 * i / data.steps, f"step {i + 1} of {data.steps}")
            await ctx.asleep(data.seconds / data.steps)
        ctx.save_output("text", data.text.encode(), "text/plain")


class SyncSleeper(Sleeper):
    """The same, as a synchronous engine in a thread."""

    name = "test/sync-sleep"
    concurrency = 8

    def run(self, ctx: JobContext) -> None:  # type: ignore[override]
        data: SleepInput = ctx.input
        for i in range(data.steps):
            ctx.progress(100 * i / data.steps, f"step {i + 1} of {data.steps}")
            ctx.sleep(data.seconds / data.steps)
        ctx.logger.info("done sleeping")
        ctx.save_output("text", data.text.encode(), "text/plain")


class Boom(EngineBase):
    """Raises at once."""

    name = "test/boom"
    task = "noop"
    input_model = SleepInput

    def run(self, ctx: JobContext) -> None:
        raise RuntimeError("the engine exploded")


class Moderated(EngineBase):
    """Fails with a chosen error code."""

    name = "test/moderated"
    task = "noop"
    input_model = SleepInput

    def run(self, ctx: JobContext) -> None:
        raise EngineError("prompt refused by the moderation filter", code="moderated")


class Stubborn(EngineBase):
    """Ignores cancellation and blocks its thread (to test grace periods and timeouts)."""

    name = "test/stubborn"
    task = "noop"
    input_model = SleepInput
    timeout_s = 1.0

    def run(self, ctx: JobContext) -> None:
        time.sleep(ctx.input.seconds)
        ctx.save_output("text", b"too late", "text/plain")


class CopyInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: FileRef


class Copier(EngineBase):
    """Copies an input file to its output."""

    name = "test/copy"
    task = "noop"
    input_model = CopyInput

    def run(self, ctx: JobContext) -> None:
        path = ctx.open_input(ctx.input.source)
        ctx.save_output("copy", path, "application/octet-stream")


class ChatterInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lines: int = Field(0, ge=0, le=100_000)
    outputs: int = Field(1, ge=1, le=50)
    fail: bool = False


class Chatter(EngineBase):
    """Reports progress and logs lines with NUL characters in them, then fails (with one
    in its error too) or writes its outputs at once."""

    name = "test/chatter"
    task = "noop"
    input_model = ChatterInput

    def run(self, ctx: JobContext) -> None:
        data: ChatterInput = ctx.input
        ctx.progress(50, "half\x00way")
        for i in range(data.lines):
            ctx.logger.info("line %d\x00", i)
        if data.fail:
            raise RuntimeError("bad\x00news")
        for i in range(data.outputs):
            ctx.save_output(f"text{i}", b"ok", "text/plain")


ENGINES: list[Any] = [Sleeper, SyncSleeper, Boom, Moderated, Stubborn, Copier, Chatter]
