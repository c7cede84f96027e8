"""Helpers for the demo engine tests: records, input files, video reading."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
from PIL import Image

from genq.engines.context import Context
from genq.engines.contract import Engine, Log, Output, Progress, Record


def outputs(records: list[Record]) -> dict[str, Output]:
    return {r.name: r for r in records if isinstance(r, Output)}


def logs(records: list[Record]) -> list[str]:
    return [r.message for r in records if isinstance(r, Log)]


def check_progress(records: list[Record], min_steps: int = 3) -> list[Progress]:
    """Progress strictly increases, has several steps and ends at 100."""
    steps = [r for r in records if isinstance(r, Progress)]
    pcts = [p.pct for p in steps]
    assert len(steps) >= min_steps, pcts
    assert all(b > a for a, b in pairwise(pcts)), pcts
    assert pcts[-1] >= 99.0, pcts
    assert all(p.message for p in steps)
    return steps


def write_png(path: Path, size: tuple[int, int] = (64, 48), seed: int = 0) -> Path:
    """A small colourful test picture (gradient plus noise)."""
    w, h = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 / max(1, w - 1), y * 255 / max(1, h - 1), np.full((h, w), 128)], -1)
    rgb = np.clip(rgb + rng.normal(0, 8, rgb.shape), 0, 255).astype(np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def resolver(mapping: dict[str, Path]) -> Callable[[str], Path]:
    def resolve(ref: str) -> Path:
        return mapping[ref]

    return resolve


def read_video(path: Path) -> tuple[dict[str, Any], list[bytes]]:
    """Metadata and frames of a video, read back with imageio-ffmpeg.

    `read_frames` leaves its pipes to the garbage collector once ffmpeg has exited,
    which raises ResourceWarning; those (and only those) are silenced here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gen = imageio_ffmpeg.read_frames(str(path))
        meta: dict[str, Any] = next(gen)
        frames = list(gen)
        gen.close()
        del gen
    return meta, frames


def cancel_during_run(
    engine: Engine,
    data: Any,
    tmp_path: Path,
    *,
    after_s: float = 0.2,
    resolve_input: Callable[[str], Path] | None = None,
) -> tuple[BaseException | None, float]:
    """Run a sync engine in a thread through a Context, cancel it after `after_s`;
    returns what it raised and how long after the cancel it stopped."""
    ctx = Context(
        job_id="job_cancel",
        input=data,
        output_dir=tmp_path / "out",
        sink=lambda rec: None,
        resolve_input=resolve_input,
    )
    raised: list[BaseException] = []

    def target() -> None:
        try:
            engine.run(ctx)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    time.sleep(after_s)
    start = time.monotonic()
    ctx.cancel()
    thread.join(10)
    stopped = time.monotonic() - start
    ctx.close()
    assert not thread.is_alive()
    return (raised[0] if raised else None), stopped
