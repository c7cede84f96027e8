"""genq's demo engines: they make real files (images, videos, 3D models, a trained
palette) with numpy, Pillow, ffmpeg, trimesh and usd-core, on the CPU, with no
downloads and deterministic results; there is no AI in them. They show how to write
an engine and let genq be tried end to end.

`ENGINES` holds one instance of each; the `genq.engines` entry point `demo` loads it.
"""

from __future__ import annotations

from genq.engines.contract import EngineBase
from genq.engines.demo.model3d import ImageTo3D, ImageTo3DInput, TextTo3D, TextTo3DInput
from genq.engines.demo.noop import Noop, NoopInput
from genq.engines.demo.text2image import Text2Image, Text2ImageInput
from genq.engines.demo.text2video import Text2Video, Text2VideoInput
from genq.engines.demo.train import Train, TrainInput
from genq.engines.demo.upscale import Upscale, UpscaleInput

ENGINES: list[EngineBase] = [
    Text2Image(),
    Upscale(),
    Text2Video(),
    TextTo3D(),
    ImageTo3D(),
    Train(),
    Noop(),
]

__all__ = [
    "ENGINES",
    "ImageTo3D",
    "ImageTo3DInput",
    "Noop",
    "NoopInput",
    "Text2Image",
    "Text2ImageInput",
    "Text2Video",
    "Text2VideoInput",
    "TextTo3D",
    "TextTo3DInput",
    "Train",
    "TrainInput",
    "Upscale",
    "UpscaleInput",
]
