"""diffusers image engines: text2image, image2image and inpaint on a configured model.

Each engine's input schema comes from its task and its configuration (sizes, steps,
guidance). A job takes its model from the worker's pool (see `pool`), runs it with a
seeded generator on the model's device, reports each denoising step as progress, and
stops within a step when canceled (the step callback sets the pipeline's interrupt
flag). A text2image job may name a LoRA trained by a `train-lora` engine of the same
base model (`model_id`): it is loaded for the job and unloaded after.
"""

from __future__ import annotations

import inspect
import json
import shutil
import time
from typing import Any, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, create_model

from genq.engines.contract import (
    EngineBase,
    EngineError,
    FileRef,
    JobCanceled,
    JobContext,
    ModelRef,
    OutputKind,
)
from genq.engines.demo._common import Seed, encode_image, load_rgb, open_image
from genq.engines.diffusers.config import EngineSpec
from genq.engines.diffusers.pool import Lease, Pool

LORA_FILE = "pytorch_lora_weights.safetensors"
LORA_KIND = "genq-diffusers-lora"


def input_model(spec: EngineSpec) -> type[BaseModel]:
    """The input schema of an image engine, bounded by its configuration."""
    side: dict[str, Any] = {"ge": spec.min_side, "le": spec.max_side, "multiple_of": 8}
    span = f"{spec.min_side}-{spec.max_side}, multiple of 8"
    prompt = (
        Field(default="", max_length=2000, description="What the picture shows (optional).")
        if spec.task == "upscale"
        else Field(min_length=1, max_length=2000, description="What to picture.")
    )
    fields: dict[str, Any] = {
        "prompt": (str, prompt),
        "negative_prompt": (
            str | None,
            Field(default=None, max_length=2000, description="What to keep out of it."),
        ),
    }
    if spec.task in ("text2image", "text2video"):
        fields["width"] = (int, Field(default=spec.size, description=f"Width ({span}).", **side))
        fields["height"] = (
            int,
            Field(default=spec.size, description=f"Height ({span}).", **side),
        )
    if spec.task == "text2video":
        fields["num_frames"] = (
            int,
            Field(default=spec.frames, ge=1, le=spec.max_frames, description="Frames."),
        )
        fields["fps"] = (
            int,
            Field(default=spec.fps, ge=1, le=120, description="Frames per second of the MP4."),
        )
    elif spec.task == "upscale":
        fields["image"] = (
            FileRef,
            Field(description=f"The picture to enlarge 4x (sides up to {spec.max_side})."),
        )
        fields["noise_level"] = (
            int,
            Field(default=20, ge=0, le=350, description="Noise added to the picture first."),
        )
    elif spec.task != "text2image":
        fields["image"] = (FileRef, Field(description="The picture to start from (a file ref)."))
        if spec.task == "inpaint":
            fields["mask"] = (
                FileRef,
                Field(description="White where to repaint, black where to keep (a file ref)."),
            )
        fields["strength"] = (
            float,
            Field(
                default=1.0 if spec.task == "inpaint" else spec.strength,
                ge=0.0,
                le=1.0,
                description="How far from the picture to go (0 keeps it, 1 ignores it).",
            ),
        )
        fields["width"] = (
            int | None,
            Field(default=None, description=f"Width ({span}); default the picture's.", **side),
        )
        fields["height"] = (
            int | None,
            Field(default=None, description=f"Height ({span}); default the picture's.", **side),
        )
    fields["steps"] = (
        int,
        Field(default=spec.steps, ge=1, le=spec.max_steps, description="Denoising steps."),
    )
    fields["guidance"] = (
        float,
        Field(
            default=spec.guidance,
            ge=0.0,
            le=100.0,
            description="Classifier-free guidance scale (0 or 1 turns it off).",
        ),
    )
    if spec.task != "text2video":
        fields["num_images"] = (
            int,
            Field(default=1, ge=1, le=spec.max_images, description="How many pictures."),
        )
    fields["seed"] = (Seed, None)
    if spec.task != "text2video":
        fields["output_format"] = (
            Literal["png", "webp"],
            Field(default="png", description="File format of the pictures."),
        )
    if spec.task == "text2image":
        fields["model_id"] = (
            ModelRef | None,
            Field(default=None, description="A LoRA trained for this engine (train-lora)."),
        )
    title = "".join(p.capitalize() for p in spec.name.replace("/", "-").split("-")) + "Input"
    model: type[BaseModel] = create_model(title, __config__=ConfigDict(extra="forbid"), **fields)
    return model


class SpecEngine(EngineBase):
    """An engine made from one GENQ_DIFFUSERS entry: its attributes come from the spec."""

    def __init__(self, spec: EngineSpec, pool: Pool, inputs: type[BaseModel]) -> None:
        self.spec = spec
        self.pool = pool
        self.name = spec.name  # type: ignore[misc]
        self.description = spec.description  # type: ignore[misc]
        self.input_model = inputs  # type: ignore[misc]
        self.price = spec.price  # type: ignore[misc]
        self.typical_duration_s = spec.typical_duration_s  # type: ignore[misc]
        self.concurrency = spec.concurrency  # type: ignore[misc]
        self.timeout_s = spec.timeout_s  # type: ignore[misc]
        # engines on one device are run one job at a time by a worker (see genq.worker)
        self.device_key = f"diffusers:{spec.model.device}"


class DiffusersEngine(SpecEngine):
    """A configured diffusers model serving one task."""

    def __init__(self, spec: EngineSpec, pool: Pool) -> None:
        super().__init__(spec, pool, input_model(spec))
        self.task = spec.task  # type: ignore[misc]

    @property
    def media(self) -> tuple[OutputKind, ...]:  # type: ignore[override]
        return ("video", "thumbnail") if self.spec.task == "text2video" else ("image",)

    def estimate(self, data: BaseModel) -> int:
        """The price per picture."""
        return self.price * int(getattr(data, "num_images", 1))

    def run(self, ctx: JobContext) -> None:
        data = ctx.input
        with self.pool.device_lock(self.spec.model):
            ctx.raise_if_canceled()
            lease = self.pool.get(self.spec.model, self.spec.task, ctx.logger)
            lora = self._lora(ctx, lease) if getattr(data, "model_id", None) else None
            try:
                images, meta = self._generate(ctx, lease, data)
            finally:
                if lora is not None:
                    lease.pipe.unload_lora_weights()
        meta["lora"] = lora
        if self.spec.task == "text2video":
            save_video(ctx, images, data.fps, meta)
            return
        for i, im in enumerate(images):
            blob, content_type = encode_image(im, data.output_format)
            seed = meta["seed"] + i
            extra = {**meta, "seed": seed, "width": im.width, "height": im.height}
            ctx.save_output(f"image_{i}", blob, content_type, kind="image", **extra)

    def _generate(
        self, ctx: JobContext, lease: Lease, data: Any
    ) -> tuple[list[Image.Image], dict[str, Any]]:
        import torch

        pipe = lease.pipe
        seed = data.seed if data.seed is not None else int(torch.seed() % 2**32)
        device = lease.device
        gen_device = "cpu" if device == "mps" else device
        task = self.spec.task
        count = getattr(data, "num_images", 1)
        generators = [torch.Generator(gen_device).manual_seed(seed + i) for i in range(count)]
        kwargs: dict[str, Any] = {
            "prompt": data.prompt,
            "negative_prompt": data.negative_prompt,
            "num_inference_steps": data.steps,
            "guidance_scale": data.guidance,
            "num_images_per_prompt": count,
            "generator": generators[:count],
            "output_type": "pil",
        }
        if data.negative_prompt is None:
            del kwargs["negative_prompt"]
        width, height = getattr(data, "width", None), getattr(data, "height", None)
        if task == "text2video":
            del kwargs["num_images_per_prompt"]
            kwargs.update(num_frames=data.num_frames, output_type="np", generator=generators[0])
        elif task == "upscale":
            image = load_rgb(open_image(ctx, data.image), data.image)
            width, height = _fit_side(None, None, image, self.spec)
            kwargs["image"] = image.resize((width, height), Image.Resampling.LANCZOS)
            kwargs["noise_level"] = data.noise_level
        elif task != "text2image":
            image = load_rgb(open_image(ctx, data.image), data.image)
            width, height = _fit_side(width, height, image, self.spec)
            kwargs["image"] = image.resize((width, height), Image.Resampling.LANCZOS)
            kwargs["strength"] = data.strength
            if self.spec.task == "inpaint":
                mask = load_rgb(open_image(ctx, data.mask), data.mask).convert("L")
                kwargs["mask_image"] = mask.resize((width, height), Image.Resampling.NEAREST)
        if task != "upscale":
            kwargs["width"], kwargs["height"] = width, height
        state: dict[str, Any] = {"total": data.steps, "stopped": None}

        def step(i: int, total: int) -> bool:
            """Report step i (from 0); True when the job is canceled."""
            state["total"] = total
            ctx.progress(100.0 * (i + 1) / max(total, 1) * 0.98, f"step {i + 1}/{total}")
            if ctx.is_canceled() and state["stopped"] is None:
                state["stopped"] = i + 1
                ctx.logger.info("canceled: stopped after step %d of %d", i + 1, total)
                return True
            return False

        def on_step_end(p: Any, i: int, t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            if step(i, int(getattr(p, "num_timesteps", 0) or data.steps)):
                p._interrupt = True  # the pipeline skips the remaining steps
            return tensors

        def on_step(i: int, t: Any, latents: Any) -> None:
            if step(i, data.steps):  # an older pipeline: no interrupt flag, so raise
                raise JobCanceled(ctx.job_id)

        if "callback_on_step_end" in _parameters(type(pipe)):
            kwargs["callback_on_step_end"] = on_step_end
        else:
            kwargs.update(callback=on_step, callback_steps=1)
        started = time.perf_counter()
        with torch.inference_mode():
            result = pipe(**kwargs)
        took = time.perf_counter() - started
        if state["stopped"] is not None or ctx.is_canceled():
            raise JobCanceled(ctx.job_id)
        meta = {
            "engine": self.name,
            "model": self.spec.model.model,
            "pipeline": type(pipe).__name__,
            "prompt": data.prompt,
            "negative_prompt": data.negative_prompt,
            "steps": data.steps,
            "guidance": data.guidance,
            "seed": seed,
            "device": device,
            "dtype": self.spec.model.dtype,
            "strength": getattr(data, "strength", None),
            "noise_level": getattr(data, "noise_level", None),
            "pipeline_s": round(took, 4),  # the pipeline's own time (the rest is genq's)
            "warm": lease.warm,
            "load_s": round(lease.load_s, 3),
            "pipeline_loads": lease.loads,
            "evicted": list(lease.evicted),
        }
        if task == "text2video":
            return list(result.frames[0]), meta
        return list(result.images), meta

    def _lora(self, ctx: JobContext, lease: Lease) -> str | None:
        """Load the job's trained LoRA into the pipeline; it must be one made for this
        engine's model."""
        if ctx.model is None:
            raise EngineError("the model named in model_id has no weights", code="invalid_input")
        info = read_lora_meta(ctx.model)
        if info is None:
            raise EngineError(
                "model_id names a model that is not a diffusers LoRA", code="invalid_input"
            )
        if info.get("base_model") != self.spec.model.model:
            raise EngineError(
                f"model_id was trained on {info.get('base_model')!r}, not on this engine's "
                f"model {self.spec.model.model!r}",
                code="invalid_input",
            )
        where = ctx.workdir / "lora"
        where.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ctx.model, where / LORA_FILE)
        lease.pipe.load_lora_weights(str(where), weight_name=LORA_FILE, adapter_name="job")
        ctx.logger.info("loaded LoRA (trigger %r)", info.get("trigger"))
        return str(info.get("trigger") or "")


def read_lora_meta(path: Any) -> dict[str, Any] | None:
    """The genq metadata a train-lora engine wrote into a safetensors file, or None."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:
        return None
    raw = meta.get(LORA_KIND)
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _fit_side(
    width: int | None, height: int | None, image: Image.Image, spec: EngineSpec
) -> tuple[int, int]:
    """The output size: given, or the picture's, scaled into the engine's bounds and
    rounded down to multiples of 8."""
    w, h = width or image.width, height or image.height
    if width is None or height is None:
        scale = min(1.0, spec.max_side / max(w, h))
        w, h = int(w * scale), int(h * scale)
    w = max(spec.min_side, min(spec.max_side, w - w % 8))
    h = max(spec.min_side, min(spec.max_side, h - h % 8))
    return w, h


_PARAMETERS: dict[str, frozenset[str]] = {}


def _parameters(cls: type) -> frozenset[str]:
    """The keyword arguments a pipeline class's __call__ takes (read once per class)."""
    key = f"{cls.__module__}.{cls.__qualname__}"
    if key not in _PARAMETERS:
        _PARAMETERS[key] = frozenset(inspect.signature(cls.__call__).parameters)
    return _PARAMETERS[key]


def save_video(ctx: JobContext, frames: list[Any], fps: int, meta: dict[str, Any]) -> None:
    """The frames (floats 0-1, H x W x 3) as an H.264 MP4 and a PNG thumbnail (the
    middle frame)."""
    import imageio_ffmpeg
    import numpy as np

    rgb = [np.ascontiguousarray((np.clip(f, 0, 1) * 255).round().astype(np.uint8)) for f in frames]
    height, width = rgb[0].shape[:2]
    path = ctx.workdir / "video.mp4"
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (width, height),
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv420p",
        quality=None,
        macro_block_size=8,
        ffmpeg_log_level="error",
        output_params=["-preset", "veryfast", "-crf", "20", "-movflags", "+faststart"],
    )
    try:
        writer.send(None)
        for frame in rgb:
            writer.send(frame)
    except (OSError, RuntimeError) as exc:
        raise EngineError(f"video encoding failed: {exc}", retryable=True) from exc
    finally:
        writer.close()
    size = {"width": width, "height": height}
    extra = {**meta, **size, "fps": fps, "frames": len(rgb)}
    ctx.save_output(
        "video", path, "video/mp4", kind="video", duration_s=round(len(rgb) / fps, 3), **extra
    )
    thumb, _ = encode_image(Image.fromarray(rgb[len(rgb) // 2]), "png")
    ctx.save_output("thumbnail", thumb, "image/png", kind="thumbnail", **size)
