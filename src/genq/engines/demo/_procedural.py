"""Procedural building blocks of the demo engines: palettes and value noise.

Demo engines make real files with plain numpy and Pillow; there is no AI here.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import re
from pathlib import Path

import numpy as np

from genq.engines.contract import EngineError
from genq.engines.demo._common import Float

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
    words = re.findall(r"[a-z]+", prompt.lower())
    named = [_HUES[word] for word in words if word in _HUES]  # the first one wins
    base = (named[0] if named else h[0] * 360 / 256) / 360
    dark = any(w in _DARK for w in words)
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
