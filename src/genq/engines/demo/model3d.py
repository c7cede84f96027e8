"""demo/text-to-3d and demo/image-to-3d: demo engines (real 3D files, but no AI).

text-to-3d picks a shape (sphere, torus, capsule, rounded box, gourd) from the prompt's
hash, adds smooth seeded bumps and a marble texture in the prompt's colours.
image-to-3d makes a relief of the image (brighter is nearer) textured with the image.
Both write GLB, USDZ, FBX and a software-rendered PNG preview.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from genq.engines.contract import EngineBase, EngineError, FileRef, JobContext
from genq.engines.demo._common import (
    Seed,
    Steps,
    delay_field,
    input_of,
    load_rgb,
    open_image,
    seed_from,
)
from genq.engines.demo._export3d import render_png, write_glb, write_usdz
from genq.engines.demo._fbx import write_fbx
from genq.engines.demo._mesh import SHAPES, Mesh, heightfield_mesh, procedural_texture, shape_mesh
from genq.engines.demo._procedural import prompt_palette

TextureSize = Literal[256, 512, 1024, 2048]


class TextTo3DInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=2000, description="What to model.")
    seed: Seed = None
    texture_size: TextureSize = Field(512, description="Side of the square texture in pixels.")
    delay_s: float = delay_field(4.0)


class ImageTo3DInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: FileRef = Field(
        description="The picture to model: an uploaded file id or an earlier job's output."
    )
    seed: Seed = None
    texture_size: TextureSize = Field(512, description="Side of the square texture in pixels.")
    delay_s: float = delay_field(4.0)


class _Base3D(EngineBase):
    media = ("model", "thumbnail")
    price = 10
    typical_duration_s = 5.0
    concurrency = 2
    timeout_s = 600.0

    def _publish(self, ctx: JobContext, mesh: Mesh, steps: Steps, **meta: object) -> None:
        """Write and save glb, usdz, fbx and thumbnail, one progress step each."""
        counts = {"vertices": len(mesh.vertices), "faces": len(mesh.faces), **meta}
        glb = ctx.workdir / "model.glb"
        write_glb(mesh, glb)
        ctx.save_output("glb", glb, "model/gltf-binary", kind="model", **counts)
        steps.step("glb")
        usdz = ctx.workdir / "model.usdz"
        try:
            write_usdz(mesh, ctx.workdir, usdz)
        except RuntimeError as exc:
            raise EngineError(f"USDZ export failed: {exc}") from exc
        ctx.save_output("usdz", usdz, "model/vnd.usdz+zip", kind="model", **counts)
        steps.step("usdz")
        fbx = ctx.workdir / "model.fbx"
        writer = write_fbx(glb, mesh, fbx)
        ctx.logger.info("fbx written by %s", writer)
        content_type = "application/vnd.autodesk.fbx"
        ctx.save_output("fbx", fbx, content_type, kind="model", writer=writer, **counts)
        steps.step("fbx")
        preview = render_png(mesh)
        ctx.save_output("thumbnail", preview, "image/png", kind="thumbnail", width=512, height=512)
        steps.step("thumbnail")


_SHAPE_WORDS = {
    "sphere": ("ball", "sphere", "planet", "orb", "globe", "apple", "moon"),
    "torus": ("donut", "doughnut", "ring", "torus", "bagel", "tyre", "tire"),
    "capsule": ("pill", "capsule", "sausage", "tube"),
    "rounded-box": ("box", "cube", "crate", "block", "dice", "brick", "house"),
    "gourd": ("vase", "bottle", "gourd", "pear", "peanut", "jar"),
}


def pick_shape(prompt: str) -> str:
    """The shape a word in the prompt names, else one picked by the prompt's hash."""
    words = set(re.findall(r"[a-z]+", prompt.lower()))
    for shape, names in _SHAPE_WORDS.items():
        if words.intersection(names):
            return shape
    return SHAPES[hashlib.sha256(prompt.encode()).digest()[5] % len(SHAPES)]


class TextTo3D(_Base3D):
    name = "demo/text-to-3d"
    task = "text-to-3d"
    description = "Textured procedural shapes from a prompt as GLB, USDZ and FBX (demo, no AI)."
    input_model = TextTo3DInput

    def run(self, ctx: JobContext) -> None:
        data = input_of(ctx, TextTo3DInput)
        seed = data.seed if data.seed is not None else seed_from(data.prompt)
        shape = pick_shape(data.prompt)
        rng = np.random.default_rng(seed)
        steps = Steps(ctx, 6, data.delay_s)
        texture = procedural_texture(rng, data.texture_size, prompt_palette(data.prompt))
        steps.step("texture")
        mesh = shape_mesh(shape, rng, texture)
        steps.step(f"{shape} mesh")
        self._publish(ctx, mesh, steps, shape=shape, seed=seed)


class ImageTo3D(_Base3D):
    name = "demo/image-to-3d"
    task = "image-to-3d"
    description = "A textured relief of a picture as GLB, USDZ and FBX (demo, no AI)."
    input_model = ImageTo3DInput

    def run(self, ctx: JobContext) -> None:
        data = input_of(ctx, ImageTo3DInput)
        steps = Steps(ctx, 6, data.delay_s)
        image = load_rgb(open_image(ctx, data.image), data.image)
        seed = data.seed if data.seed is not None else seed_from(image.tobytes())
        steps.step("image decoded")
        mesh = heightfield_mesh(image, np.random.default_rng(seed), data.texture_size)
        steps.step("relief mesh")
        self._publish(ctx, mesh, steps, seed=seed)
