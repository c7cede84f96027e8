"""Shared helpers of the demo engines (input fields, seeds, progress steps, images).

The demo engines make real files (pictures, videos, meshes, palettes) with plain
numpy, Pillow, ffmpeg, trimesh and usd-core; there is no AI anywhere in them.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field

from genq.engines.contract import EngineError, JobContext

Float = NDArray[np.floating[Any]]
Seed = Annotated[
    int | None,
    Field(
        ge=0,
        le=2**32 - 1,
        description="Random seed (0 to 4294967295). The same seed and input give the same "
        "result; leave it out to derive one from the input.",
    ),
]
ImageFormat = Literal["png", "jpeg", "webp"]
FORMATS: dict[str, tuple[str, str]] = {  # output_format -> (Pillow format, content type)
    "png": ("PNG", "image/png"),
    "jpeg": ("JPEG", "image/jpeg"),
    "webp": ("WEBP", "image/webp"),
}
MAX_INPUT_PIXELS = 64_000_000

M = TypeVar("M", bound=BaseModel)


def delay_field(default: float) -> Any:
    return Field(
        default=default,
        title="Delay (s)",
        ge=0,
        le=600,
        description="Seconds to spread the work over, to look like a slow model; "
        "0 runs as fast as possible.",
    )


def input_of(ctx: JobContext, model: type[M]) -> M:
    """The job's input as `model` (validating it if the runtime handed a dict)."""
    data = ctx.input
    return data if isinstance(data, model) else model.model_validate(data)


def seed_from(data: str | bytes) -> int:
    """A stable 32-bit seed from a text or bytes."""
    raw = data.encode() if isinstance(data, str) else data
    return int.from_bytes(hashlib.sha256(raw).digest()[:4], "big")


class Steps:
    """Work in `total` steps: after each one, wait `delay_s / total` (woken by a
    cancel), check for cancellation and report progress `step i of n`."""

    def __init__(self, ctx: JobContext, total: int, delay_s: float) -> None:
        self.ctx = ctx
        self.total = max(1, total)
        self.pause = delay_s / self.total
        self.done_steps = 0

    def step(self, what: str = "") -> None:
        self.ctx.raise_if_canceled()
        if self.pause > 0:
            self.ctx.sleep(self.pause)
        self.done_steps = min(self.done_steps + 1, self.total)
        pct = 100.0 * self.done_steps / self.total
        text = f"step {self.done_steps} of {self.total}"
        self.ctx.progress(pct, f"{text}: {what}" if what else text)


# -- images ------------------------------------------------------------------------


def to_uint8(rgb: Float) -> NDArray[np.uint8]:
    out: NDArray[np.uint8] = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    return out


def encode_image(im: Image.Image, fmt: str) -> tuple[bytes, str]:
    """(bytes, content type) of `im` in output format `fmt` (png, jpeg, webp)."""
    pil_format, content_type = FORMATS[fmt]
    if pil_format == "JPEG" and im.mode not in ("RGB", "L"):
        im = im.convert("RGB")
    buf = io.BytesIO()
    options: dict[str, Any] = {
        "PNG": {"compress_level": 3},  # much faster than the default 6, a few % larger
        "JPEG": {"quality": 92},
        "WEBP": {"quality": 90},
    }
    im.save(buf, format=pil_format, **options[pil_format])
    return buf.getvalue(), content_type


def open_image(ctx: JobContext, ref: str, max_pixels: int = MAX_INPUT_PIXELS) -> Image.Image:
    """Open an input image lazily (header only), refusing what is not a decodable image."""
    try:
        path = ctx.open_input(ref)
    except (LookupError, OSError) as exc:
        raise EngineError(f"input {ref} cannot be opened: {exc}", code="invalid_input") from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
    except (
        UnidentifiedImageError,
        OSError,
        Image.DecompressionBombWarning,
        Image.DecompressionBombError,
    ) as exc:
        raise EngineError(f"input {ref} is not a readable image", code="invalid_input") from exc
    if im.width * im.height > max_pixels:
        im.close()
        raise EngineError(
            f"input {ref} is too large ({im.width}x{im.height})", code="invalid_input"
        )
    return im


def load_rgb(im: Image.Image, ref: str) -> Image.Image:
    """Decode `im` fully as RGB (alpha composited on white), or fail with invalid_input;
    closes `im`."""
    try:
        with im:
            return _flatten(im)
    except (OSError, ValueError, SyntaxError) as exc:
        raise EngineError(f"input {ref} is not a decodable image", code="invalid_input") from exc


def _flatten(im: Image.Image) -> Image.Image:
    im.load()
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", im.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return im.convert("RGB")
