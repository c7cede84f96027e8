"""demo/noop: a demo engine that does nothing (no files, no AI).

It finishes at once (or after `delay_s`, in a few progress steps), for benchmarks and
for testing failures (`fail: true`). It is the async example among the demo engines.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from genq.engines.contract import EngineBase, EngineError, JobContext
from genq.engines.demo._common import delay_field, input_of

STEPS = 4


class NoopInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delay_s: float = delay_field(0.0)
    fail: bool = Field(default=False, description="Fail the job on purpose (engine_error).")
    message: str | None = Field(
        default=None, max_length=1000, description="Logged by the job; the error text if it fails."
    )


class Noop(EngineBase):
    name = "demo/noop"
    task = "noop"
    description = "Does nothing, at once or after delay_s; can fail on request (demo)."
    input_model = NoopInput
    media = ()
    price = 1
    typical_duration_s = 0.05
    concurrency = 64
    timeout_s = 600.0

    async def run(self, ctx: JobContext) -> None:
        data = input_of(ctx, NoopInput)
        if data.message:
            ctx.logger.info("%s", data.message)
        if data.delay_s > 0:
            for i in range(1, STEPS + 1):
                await ctx.asleep(data.delay_s / STEPS)
                if data.fail and i == STEPS // 2:
                    break
                ctx.progress(100.0 * i / STEPS, f"step {i} of {STEPS}")
        ctx.raise_if_canceled()
        if data.fail:
            raise EngineError(data.message or "failed on request (fail: true)")
        if data.delay_s == 0:
            ctx.progress(100.0, "done")
