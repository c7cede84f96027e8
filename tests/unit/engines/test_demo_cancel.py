"""Every sync demo engine stops promptly with JobCanceled when its job is canceled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from genq.engines.contract import EngineBase, JobCanceled
from genq.engines.demo import (
    ImageTo3D,
    ImageTo3DInput,
    Text2Image,
    Text2ImageInput,
    Text2Video,
    Text2VideoInput,
    TextTo3D,
    TextTo3DInput,
    Train,
    TrainInput,
    Upscale,
    UpscaleInput,
)

from .helpers import cancel_during_run, outputs, resolver, write_png

REF = "file_abcdefghij0123"
CASES: list[tuple[EngineBase, Any]] = [
    (Text2Image(), Text2ImageInput(prompt="x", width=64, height=64, delay_s=5)),
    (Upscale(), UpscaleInput(image=REF, delay_s=5)),
    (Text2Video(), Text2VideoInput(prompt="x", width=64, height=64, delay_s=5)),
    (TextTo3D(), TextTo3DInput(prompt="x", texture_size=256, delay_s=5)),
    (ImageTo3D(), ImageTo3DInput(image=REF, texture_size=256, delay_s=5)),
    (Train(), TrainInput(images=[REF], delay_s=5)),
]


@pytest.mark.parametrize(("engine", "data"), CASES, ids=[e.name for e, _ in CASES])
def test_cancel_stops_quickly(engine: EngineBase, data: Any, tmp_path: Path) -> None:
    src = write_png(tmp_path / "in.png", (32, 32))
    raised, stopped = cancel_during_run(
        engine, data, tmp_path, after_s=0.2, resolve_input=resolver({REF: src})
    )
    assert isinstance(raised, JobCanceled), raised
    assert stopped < 2.0


def test_delay_spreads_the_work(tmp_path: Path) -> None:
    import time

    from genq.engines.context import run_local

    start = time.monotonic()
    records = run_local(
        Text2Image(), {"prompt": "x", "width": 64, "height": 64, "delay_s": 0.5}, tmp_path
    )
    assert 0.5 <= time.monotonic() - start < 3
    assert "image_0" in outputs(records)
