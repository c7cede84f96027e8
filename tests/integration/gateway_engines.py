"""The engine the upstream genq runs behind its faces in the gateway tests: what it does
is written in the prompt (`sleep:SECONDS`, `steps:N`, `fail`), so a test scripts the
upstream job through the front's own input."""

from __future__ import annotations

import io
import re

from PIL import Image
from pydantic import BaseModel, Field

from genq.engines.contract import EngineBase, EngineError, JobContext


class ScriptInput(BaseModel):
    prompt: str = Field("", max_length=2000)


class Scripted(EngineBase):
    name = "gw/scripted"
    task = "text2image"
    input_model = ScriptInput
    media = ("image",)
    price = 1
    typical_duration_s = 1.0
    concurrency = 200

    async def run(self, ctx: JobContext) -> None:
        prompt = ctx.input.prompt
        sleep = float(m.group(1)) if (m := re.search(r"sleep:([0-9.]+)", prompt)) else 0.0
        steps = int(m.group(1)) if (m := re.search(r"steps:([0-9]+)", prompt)) else 4
        for i in range(steps):
            ctx.progress(100 * i / steps, f"step {i + 1} of {steps}")
            await ctx.asleep(sleep / steps)
        if "fail" in prompt:
            raise EngineError("the scripted job failed as asked")
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, "PNG")
        ctx.save_output("image", buf.getvalue(), "image/png")


ENGINES = [Scripted]
SCRIPTED = "tests.integration.gateway_engines:ENGINES"
# every face function the gateway tests use, routed to the scripted engine
ROUTES = {
    "masterpiecex:functions/general": "gw/scripted",
    "useapi:pixverse-create_single": "gw/scripted",
    "photogpt:images/generation": "gw/scripted",
    "vivix:model:grok-imagine-image": "gw/scripted",
}
