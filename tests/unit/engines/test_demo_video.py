"""demo/text2video writes a real H.264 MP4 that ffmpeg reads back."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from genq.engines.context import run_local
from genq.engines.demo import Text2Video, Text2VideoInput

from .helpers import check_progress, outputs, read_video


def test_text2video(tmp_path: Path) -> None:
    data = {"prompt": "waves", "seconds": 1.5, "fps": 8, "width": 96, "height": 64, "delay_s": 0}
    records = run_local(Text2Video(), data, tmp_path)
    check_progress(records)
    outs = outputs(records)
    video, thumb = outs["video"], outs["thumbnail"]
    assert video.content_type == "video/mp4" and video.kind == "video"
    assert video.meta == {"width": 96, "height": 64, "fps": 8, "frames": 12, "duration_s": 1.5}
    assert thumb.kind == "thumbnail" and thumb.content_type == "image/png"

    meta, frames = read_video(video.path)
    assert meta["codec"] == "h264"
    assert meta["pix_fmt"].startswith("yuv420p")
    assert meta["size"] == (96, 64)
    assert meta["fps"] == 8
    assert len(frames) == 12
    assert all(len(f) == 96 * 64 * 3 for f in frames)
    first, last = (np.frombuffer(f, np.uint8).astype(int) for f in (frames[0], frames[6]))
    assert np.abs(first - last).mean() > 2  # it moves
    assert imageio_ffmpeg.count_frames_and_secs(str(video.path)) == (12, 1.5)
    with Image.open(thumb.path) as im:
        assert im.format == "PNG" and im.size == (96, 64)


def test_text2video_seeded(tmp_path: Path) -> None:
    base = {"prompt": "fire", "seconds": 1, "fps": 8, "width": 64, "height": 64, "delay_s": 0}
    a = outputs(run_local(Text2Video(), {**base, "seed": 1}, tmp_path / "a"))
    b = outputs(run_local(Text2Video(), {**base, "seed": 1}, tmp_path / "b"))
    c = outputs(run_local(Text2Video(), {**base, "seed": 2}, tmp_path / "c"))
    assert a["thumbnail"].sha256 == b["thumbnail"].sha256 != c["thumbnail"].sha256


@pytest.mark.parametrize(
    "bad",
    [
        {"prompt": "x", "width": 100},
        {"prompt": "x", "height": 48},
        {"prompt": "x", "seconds": 11},
        {"prompt": "x", "seconds": 0.5},
        {"prompt": "x", "fps": 60},
        {"prompt": "x", "width": 1296},
        {"prompt": "x", "audio": True},
    ],
)
def test_text2video_invalid(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Text2VideoInput.model_validate(bad)
