"""Shared helpers of the demo engines (seeds, palettes, noise, progress steps, images).

The demo engines make real files (pictures, videos, meshes, palettes) with plain
numpy, Pillow, ffmpeg, trimesh and usd-core; there is no AI anywhere in them.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import json
import warnings
from pathlib import Path
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


# -- colours -----------------------------------------------------------------------

_HUES = {  # colour words in a prompt steer the palette's base hue (degrees)
    "red": 0,
    "fire": 10,
    "sunset": 20,
    "orange": 30,
    "autumn": 35,
    "desert": 40,
    "gold": 45,
    "yellow": 55,
    "lime": 90,
    "forest": 120,
    "green": 120,
    "jungle": 130,
    "teal": 175,
    "ocean": 195,
    "sea": 200,
    "sky": 205,
    "ice": 190,
    "blue": 220,
    "night": 235,
    "indigo": 255,
    "purple": 275,
    "violet": 280,
    "pink": 320,
    "rose": 340,
    "magenta": 300,
}
_DARK = ("night", "dark", "moon", "midnight", "space", "shadow")


def prompt_palette(prompt: str, negative: str | None = None) -> Float:
    """Five RGB colours in 0..1 (sky top, horizon, sun, far land, near land) chosen
    from the prompt's hash and colour words; the negative prompt shifts them."""
    key = prompt if not negative else f"{prompt}\x00{negative}"
    h = hashlib.sha256(key.encode()).digest()
    words = prompt.lower()
    named = [hue for word, hue in _HUES.items() if word in words]
    base = (named[0] if named else h[0] * 360 / 256) / 360
    dark = any(w in words for w in _DARK)
    scheme = h[1] % 3  # 0 analogous, 1 complementary, 2 triadic
    other = base + (0.08, 0.5, 1 / 3)[scheme] * (1 if h[2] % 2 else -1)
    sat = 0.45 + h[3] / 255 * 0.35
    val = 0.45 if dark else 0.85
    hsv = [
        (base, sat, val * 0.8),  # sky top
        (base + 0.05, sat * 0.5, min(1.0, val + 0.12)),  # horizon
        (other + 0.5 * (scheme == 0), 0.2 + h[4] / 255 * 0.35, 1.0),  # sun, a pale tint
        (other, sat * 0.7, val * 0.62),  # far land
        (other + 0.04, min(1.0, sat + 0.15), val * 0.28),  # near land
    ]
    return np.array([colorsys.hsv_to_rgb(hh % 1.0, s, v) for hh, s, v in hsv])


def luma(rgb: Float) -> Float:
    return np.asarray(rgb[..., :3] @ np.array([0.299, 0.587, 0.114]), dtype=np.float64)


def gradient_lut(colors: Float, n: int = 256) -> Float:
    """An (n, 3) colour ramp through `colors` in order."""
    pos = np.linspace(0, len(colors) - 1, n)
    i = np.minimum(pos.astype(int), len(colors) - 2)
    t = (pos - i)[:, None]
    return np.asarray(colors[i] * (1 - t) + colors[i + 1] * t, dtype=np.float64)


def read_palette(path: Path) -> tuple[Float, Float, float]:
    """(colours 0..1, weights, brightness 0..1) from a demo/train `weights` artifact."""
    try:
        doc = json.loads(path.read_text())
        if doc.get("kind") != "genq-demo-palette":
            raise ValueError("not a genq demo palette")
        colors = np.clip(np.array(doc["palette"], dtype=np.float64) / 255.0, 0, 1)
        weights = np.array(doc.get("weights") or [1.0] * len(colors), dtype=np.float64)
        if colors.ndim != 2 or colors.shape[1] != 3 or len(colors) < 1:
            raise ValueError("palette must be a list of [r, g, b]")
        return colors, weights, float(doc.get("brightness", luma(colors).mean()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EngineError(f"unusable model artifact: {exc}", code="invalid_model") from exc


# -- noise -------------------------------------------------------------------------


def _weights(n: int, cells: int) -> Float:
    """(n, cells + 1) smoothstep interpolation weights of n samples over `cells` cells."""
    pos = np.linspace(0, cells, n, endpoint=False)
    i = pos.astype(int)
    f = pos - i
    f = f * f * (3 - 2 * f)
    out = np.zeros((n, cells + 1))
    out[np.arange(n), i] = 1 - f
    out[np.arange(n), i + 1] = f
    return out


def value_noise(
    rng: np.random.Generator, h: int, w: int, cells: tuple[int, int], wrap: bool = False
) -> Float:
    """Smooth value noise in 0..1 of shape (h, w) over a grid of `cells` (rows, cols);
    `wrap` makes it tile in both directions. Interpolation is separable, so it is two
    small matrix products."""
    cy, cx = cells
    grid = rng.random((cy + 1, cx + 1))
    if wrap:
        grid[:, -1] = grid[:, 0]
        grid[-1, :] = grid[0, :]
    return np.asarray(_weights(h, cy) @ grid @ _weights(w, cx).T, dtype=np.float64)


def fbm(
    rng: np.random.Generator,
    h: int,
    w: int,
    base: int = 3,
    octaves: int = 4,
    wrap: bool = False,
    aspect: float = 1.0,
) -> Float:
    """Fractal value noise in about 0..1 (`aspect`: more cells across than down)."""
    out = np.zeros((h, w))
    amp, total = 1.0, 0.0
    for o in range(octaves):
        n = base * 2**o
        out += amp * value_noise(rng, h, w, (n, max(1, round(n * aspect))), wrap)
        total += amp
        amp *= 0.5
    return out / total


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
