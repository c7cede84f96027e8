"""The Cog model the Cog tests serve (`python -m cog.server.http`, no Docker): setup
sleeps `COG_TEST_SETUP_S`; predict draws a small PNG over `steps` steps of `step_s`
seconds, printing a tqdm-like progress line and a log line per step, and returns the
image and a text. A cancel is noted in `COG_TEST_MARKS`/canceled-<prompt> (the test's
proof that the server got it); each start in `COG_TEST_MARKS`/started-<port>-<prompt>."""

import os
import time
from pathlib import Path as P

from cog import BaseModel, BasePredictor, Input, Path


class Output(BaseModel):
    image: Path
    text: str


class Predictor(BasePredictor):
    def setup(self) -> None:
        time.sleep(float(os.environ.get("COG_TEST_SETUP_S", "0.2")))

    def predict(
        self,
        prompt: str = Input(description="what to draw"),
        steps: int = Input(default=2, ge=1, le=1000),
        step_s: float = Input(default=0.05, ge=0, le=10),
    ) -> Output:
        from PIL import Image

        marks = P(os.environ["COG_TEST_MARKS"])
        (marks / f"started-{os.environ.get('PORT')}-{prompt}").touch()
        try:
            for i in range(steps):
                time.sleep(step_s)
                print(f"step {i + 1} of {prompt}", flush=True)
                done = i + 1
                print(
                    f"{100 * done // steps}%|{'#' * done}| {done}/{steps} [00:01<00:00]", flush=True
                )
        except BaseException:  # coglet.CancelationException (a BaseException)
            (marks / f"canceled-{prompt}").touch()
            raise
        out = P(os.environ["COG_TEST_MARKS"]) / f"out-{os.getpid()}-{prompt}.png"
        Image.new("RGB", (32, 32), (len(prompt) * 20 % 256, 120, 40)).save(out)
        return Output(image=Path(out), text=f"drew {prompt} in {steps} steps")
