"""Procedural meshes of the demo 3D engines (real geometry, no AI).

Shapes are parametric grids over (u, v) in 0..1, so every vertex has a natural
texture coordinate; the seam columns are duplicated and share averaged normals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFilter

from genq.engines.demo._common import Float, to_uint8
from genq.engines.demo._procedural import fbm, gradient_lut, luma

Int = NDArray[np.int64]
SHAPES = ("sphere", "torus", "capsule", "rounded-box", "gourd")


@dataclass
class Mesh:
    vertices: Float  # (n, 3), Y up
    faces: Int  # (m, 3), counter-clockwise seen from outside
    normals: Float  # (n, 3) unit
    uv: Float  # (n, 2), origin bottom-left
    texture: Image.Image  # RGB
    double_sided: bool = False


def _grid_faces(nu: int, nv: int) -> Int:
    """Two triangles per cell of a (nv + 1) x (nu + 1) vertex grid."""
    i, j = np.mgrid[0:nv, 0:nu]
    a = (i * (nu + 1) + j).ravel()
    b, c, d = a + 1, a + nu + 1, a + nu + 2
    return np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)])


def _signed(a: Float, e: float) -> Float:
    return np.asarray(np.sign(a) * np.abs(a) ** e, dtype=np.float64)


def _surface(shape: str, u: Float, v: Float, rng: np.random.Generator) -> Float:
    theta = 2 * np.pi * u
    if shape == "torus":
        r, phi = rng.uniform(0.25, 0.4), 2 * np.pi * v
        ring = 0.75 + r * np.cos(phi)
        return np.stack([ring * np.cos(theta), r * np.sin(phi), ring * np.sin(theta)], -1)
    phi = np.pi * v
    if shape == "rounded-box":
        e = rng.uniform(0.25, 0.45)
        s = _signed(np.sin(phi), e)
        return np.stack(
            [
                s * _signed(np.cos(theta), e),
                -_signed(np.cos(phi), e),
                s * _signed(np.sin(theta), e),
            ],
            -1,
        )
    radius = np.sin(phi)
    y = -np.cos(phi)
    if shape == "capsule":
        # v in [0, .35] is the bottom cap, [.35, .65] the straight side, [.65, 1] the top
        half = rng.uniform(0.3, 0.6)
        phi = np.pi * 0.5 * (np.clip(v / 0.35, 0, 1) + np.clip((v - 0.65) / 0.35, 0, 1))
        side = np.clip((v - 0.35) / 0.3, 0, 1)
        radius, y = 0.55 * np.sin(phi), -0.55 * np.cos(phi) + half * (2 * side - 1)
    elif shape == "gourd":
        k, p = rng.uniform(1.5, 3.0), rng.uniform(0, np.pi)
        radius = np.sin(phi) ** 0.8 * (0.55 + 0.25 * np.sin(k * phi + p))
        y = 1.2 * (2 * v - 1)
    return np.stack([radius * np.cos(theta), y, radius * np.sin(theta)], -1)


def vertex_normals(vertices: Float, faces: Int) -> Float:
    """Area-weighted normals, averaged over vertices that share a position."""
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    acc = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(acc, faces[:, k], fn)
    _, group = np.unique(np.round(vertices, 6), axis=0, return_inverse=True)
    group = group.ravel()
    merged = np.zeros((int(group.max()) + 1, 3))
    np.add.at(merged, group, acc)
    n = merged[group]
    length = np.linalg.norm(n, axis=1, keepdims=True)
    fallback = np.where(np.linalg.norm(vertices, axis=1, keepdims=True) > 0, vertices, [0, 1, 0])
    return np.asarray(np.where(length > 1e-12, n / np.maximum(length, 1e-12), fallback))


def _drop_degenerate(vertices: Float, faces: Int) -> Int:
    tri = vertices[faces]
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    return np.asarray(faces[area > 1e-10])


def procedural_texture(rng: np.random.Generator, size: int, palette: Float) -> Image.Image:
    """A tiling marble-like texture through the palette's colours; bigger textures get
    more octaves of detail."""
    octaves = 4 + max(0, int(np.log2(size / 256)))
    noise = fbm(rng, size, size, base=4, octaves=octaves, wrap=True)
    v = np.linspace(0, 1, size, endpoint=False)[:, None]
    bands = int(rng.integers(2, 6))
    t = 0.5 + 0.5 * np.sin(2 * np.pi * (bands * v + 1.5 * noise))
    t = np.clip(0.7 * t + 0.6 * (noise - 0.5) + 0.15, 0, 1)
    lut = gradient_lut(palette[[4, 3, 0, 1, 2]])
    return Image.fromarray(to_uint8(lut[(t * 255).astype(int)]))


def shape_mesh(
    shape: str, rng: np.random.Generator, texture: Image.Image, nu: int = 96, nv: int = 48
) -> Mesh:
    """A shape from SHAPES with smooth seeded bumps along its normals."""
    gu, gv = np.meshgrid(np.linspace(0, 1, nu + 1), np.linspace(0, 1, nv + 1))
    u, v = gu.ravel(), gv.ravel()
    verts = _surface(shape, u, v, rng)
    faces = _drop_degenerate(verts, _grid_faces(nu, nv))
    normals = vertex_normals(verts, faces)
    k = rng.normal(0, 1, (4, 3))
    k *= rng.uniform(2, 6, (4, 1)) / np.linalg.norm(k, axis=1, keepdims=True)
    bumps = np.sin(verts @ k.T + rng.uniform(0, 2 * np.pi, 4)).sum(1) * rng.uniform(0.015, 0.04)
    verts = verts + normals * bumps[:, None]
    verts -= (verts.max(0) + verts.min(0)) / 2
    normals = vertex_normals(verts, faces)
    return Mesh(verts, faces, normals, np.stack([u, v], 1), texture)


def heightfield_mesh(image: Image.Image, rng: np.random.Generator, texture_size: int) -> Mesh:
    """A relief of `image`: brighter is nearer; the image itself is the texture."""
    long_side = 96
    scale = long_side / max(image.size)
    gw, gh = max(2, round(image.width * scale)), max(2, round(image.height * scale))
    small = image.resize((gw, gh), Image.Resampling.BOX).filter(ImageFilter.GaussianBlur(1.2))
    height = luma(np.asarray(small, dtype=np.float64) / 255.0)
    height = height * rng.uniform(0.18, 0.32) + fbm(rng, gh, gw, base=2, octaves=3) * 0.05
    sx, sy = 2 * gw / max(gw, gh), 2 * gh / max(gw, gh)
    j, i = np.meshgrid(np.arange(gw) / (gw - 1), np.arange(gh) / (gh - 1))
    verts = np.stack([(j - 0.5) * sx, (0.5 - i) * sy, height - height.mean()], -1).reshape(-1, 3)
    uv = np.stack([j, 1 - i], -1).reshape(-1, 2)
    faces = _grid_faces(gw - 1, gh - 1)
    tex = image.resize((texture_size, texture_size), Image.Resampling.LANCZOS)
    return Mesh(verts, faces, vertex_normals(verts, faces), uv, tex, double_sided=True)


def sample_texture(mesh: Mesh, uv: Float) -> Float:
    """RGB in 0..1 of the texture at texture coordinates `uv` (wrapping)."""
    tex = np.asarray(mesh.texture.convert("RGB"), dtype=np.float64) / 255.0
    h, w, _ = tex.shape
    x = (np.mod(uv[:, 0], 1.0) * (w - 1)).round().astype(int)
    y = ((1 - np.mod(uv[:, 1], 1.0)) * (h - 1)).round().astype(int)
    return np.asarray(tex[y, x])
