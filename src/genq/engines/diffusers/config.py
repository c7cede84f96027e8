"""`GENQ_DIFFUSERS` read into engine specs, checked before anything is loaded.

    GENQ_DIFFUSERS='{"sd/text2image": {"task": "text2image", "model": "stabilityai/sdxl-turbo",
                     "dtype": "float16", "device": "cuda", "steps": 1, "guidance": 0.0},
                     "sd/train-lora": {"task": "train-lora", "base": "sd/text2image"}}'

Reading the configuration imports neither torch nor diffusers: a server without the
`diffusers` extra starts as long as nothing is configured, and one configured without
it stops at startup with a message naming the extra (exit status 2, like a bad
`GENQ_UPSTREAMS`).
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from typing import Any

from genq.errors import ConfigError

PIPE_TASKS = ("text2image", "image2image", "inpaint", "upscale", "text2video")
TASKS = (*PIPE_TASKS, "train-lora")
DTYPES = ("float16", "bfloat16", "float32")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?|xpu(:\d+)?)$")
# what each task's entry may say besides `task` (and what it means)
_KEYS = {
    "common": {
        "description",
        "price",
        "typical_duration_s",
        "concurrency",
        "timeout_s",
    },
    "image": {
        "model",
        "dtype",
        "device",
        "pipeline",
        "variant",
        "size",
        "min_side",
        "max_side",
        "steps",
        "max_steps",
        "guidance",
        "max_images",
        "strength",
        "threads",
        "frames",
        "max_frames",
        "fps",
    },
    "train-lora": {"base", "steps", "max_steps", "rank", "learning_rate", "resolution"},
}


class DiffusersConfigError(ConfigError):
    """GENQ_DIFFUSERS says something genq cannot use."""


@dataclass(frozen=True)
class ModelSpec:
    """What identifies one loaded model in a worker's pool."""

    model: str  # hub id or local directory
    dtype: str
    device: str  # "auto" is resolved when the model is loaded
    pipeline: str | None = None  # a diffusers pipeline class name; default AutoPipelineFor*
    variant: str | None = None  # e.g. "fp16" weights files
    threads: int = field(
        default=1, compare=False
    )  # torch threads on the CPU (genq runs native code one thread a call)


@dataclass(frozen=True)
class EngineSpec:
    name: str
    task: str
    model: ModelSpec
    description: str = ""
    price: int = 1
    typical_duration_s: float = 10.0
    concurrency: int = 1
    timeout_s: float = 900.0
    size: int = 512
    min_side: int = 64
    max_side: int = 2048
    steps: int = 30
    max_steps: int = 150
    guidance: float = 7.5
    max_images: int = 4
    strength: float = 0.6
    frames: int = 16  # text2video
    max_frames: int = 64
    fps: int = 8
    # train-lora
    base: str = ""
    rank: int = 4
    learning_rate: float = 1e-4
    resolution: int = 512


def _num(where: str, value: Any, kind: type, lo: float, hi: float | None = None) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DiffusersConfigError(f"{where}: expected a number, got {value!r}")
    if kind is int and not float(value).is_integer():
        raise DiffusersConfigError(f"{where}: expected a whole number, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
        raise DiffusersConfigError(f"{where}: must be {bound}, got {value!r}")
    return kind(value)


def _str(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DiffusersConfigError(f"{where}: expected a non-empty string")
    return value.strip()


def parse(config: dict[str, Any], *, check_installed: bool = True) -> dict[str, EngineSpec]:
    """Engine specs by name; raises DiffusersConfigError with the first problem found."""
    if not config:
        return {}
    if check_installed:
        missing = [m for m in ("torch", "diffusers") if importlib.util.find_spec(m) is None]
        if missing:
            raise DiffusersConfigError(
                f"GENQ_DIFFUSERS is set but {' and '.join(missing)} cannot be imported: "
                "install the extra (pip install 'genq[diffusers]') and a torch build for "
                "your hardware"
            )
    specs: dict[str, EngineSpec] = {}
    trains: dict[str, dict[str, Any]] = {}
    for name, entry in config.items():
        where = f"GENQ_DIFFUSERS.{name}"
        if not _NAME.match(name):
            raise DiffusersConfigError(f"{where}: engine names look like 'vendor/name'")
        if not isinstance(entry, dict):
            raise DiffusersConfigError(f"{where}: expected an object")
        task = entry.get("task")
        if task not in TASKS:
            raise DiffusersConfigError(f"{where}.task: one of {', '.join(TASKS)} (got {task!r})")
        allowed = _KEYS["common"] | _KEYS["train-lora" if task == "train-lora" else "image"]
        unknown = sorted(set(entry) - allowed - {"task"})
        if unknown:
            raise DiffusersConfigError(
                f"{where}: unknown key {unknown[0]!r} for task {task} "
                f"(known: {', '.join(sorted(allowed))})"
            )
        if task == "train-lora":
            trains[name] = entry
            continue
        specs[name] = _image_spec(where, name, task, entry)
    for name, entry in trains.items():
        where = f"GENQ_DIFFUSERS.{name}"
        base = _str(f"{where}.base", entry.get("base"))
        if base not in specs or specs[base].task != "text2image":
            raise DiffusersConfigError(
                f"{where}.base: {base!r} is not a text2image engine of GENQ_DIFFUSERS"
            )
        b = specs[base]
        specs[name] = EngineSpec(
            name=name,
            task="train-lora",
            model=b.model,
            base=base,
            description=str(entry.get("description", ""))
            or f"Trains a LoRA of {b.model.model} for {base} (a trigger word in the prompt "
            "calls it up).",
            price=_num(f"{where}.price", entry.get("price", 20), int, 0),
            typical_duration_s=_num(
                f"{where}.typical_duration_s", entry.get("typical_duration_s", 600), float, 0
            ),
            concurrency=_num(f"{where}.concurrency", entry.get("concurrency", 1), int, 1),
            timeout_s=_num(f"{where}.timeout_s", entry.get("timeout_s", 7200), float, 1),
            steps=_num(f"{where}.steps", entry.get("steps", 500), int, 1),
            max_steps=_num(f"{where}.max_steps", entry.get("max_steps", 5000), int, 1),
            rank=_num(f"{where}.rank", entry.get("rank", 4), int, 1, 256),
            learning_rate=_num(
                f"{where}.learning_rate", entry.get("learning_rate", 1e-4), float, 0
            ),
            resolution=_num(f"{where}.resolution", entry.get("resolution", b.size), int, 8, 4096),
        )
    return specs


def _image_spec(where: str, name: str, task: str, entry: dict[str, Any]) -> EngineSpec:
    model = _str(f"{where}.model", entry.get("model"))
    device = str(entry.get("device", "auto"))
    if not _DEVICE.match(device):
        raise DiffusersConfigError(
            f"{where}.device: auto, cpu, mps, cuda or cuda:N (got {device!r})"
        )
    default_dtype = "float32" if device == "cpu" else "float16"
    dtype = entry.get("dtype", default_dtype)
    if dtype not in DTYPES:
        raise DiffusersConfigError(f"{where}.dtype: one of {', '.join(DTYPES)} (got {dtype!r})")
    pipeline = entry.get("pipeline")
    if pipeline is not None and not (isinstance(pipeline, str) and pipeline.isidentifier()):
        raise DiffusersConfigError(f"{where}.pipeline: a diffusers pipeline class name")
    variant = entry.get("variant")
    if variant is not None:
        variant = _str(f"{where}.variant", variant)
    min_side = _num(f"{where}.min_side", entry.get("min_side", 64), int, 8, 16384)
    max_side = _num(f"{where}.max_side", entry.get("max_side", 2048), int, min_side, 16384)
    size = _num(f"{where}.size", entry.get("size", min(512, max_side)), int, min_side, max_side)
    for key, value in (("min_side", min_side), ("max_side", max_side), ("size", size)):
        if value % 8:
            raise DiffusersConfigError(f"{where}.{key}: a multiple of 8 (got {value})")
    max_steps = _num(f"{where}.max_steps", entry.get("max_steps", 150), int, 1, 10000)
    max_frames = _num(f"{where}.max_frames", entry.get("max_frames", 64), int, 1, 10000)
    return EngineSpec(
        name=name,
        task=task,
        model=ModelSpec(
            model=model,
            dtype=dtype,
            device=device,
            pipeline=pipeline,
            variant=variant,
            threads=_num(f"{where}.threads", entry.get("threads", 1), int, 1, 1024),
        ),
        description=str(entry.get("description", "")) or f"{task} with {model} (diffusers)",
        price=_num(f"{where}.price", entry.get("price", 1), int, 0),
        typical_duration_s=_num(
            f"{where}.typical_duration_s", entry.get("typical_duration_s", 10), float, 0
        ),
        concurrency=_num(f"{where}.concurrency", entry.get("concurrency", 1), int, 1),
        timeout_s=_num(f"{where}.timeout_s", entry.get("timeout_s", 900), float, 1),
        size=size,
        min_side=min_side,
        max_side=max_side,
        steps=_num(f"{where}.steps", entry.get("steps", 30), int, 1, max_steps),
        max_steps=max_steps,
        guidance=_num(f"{where}.guidance", entry.get("guidance", 7.5), float, 0, 100),
        max_images=_num(f"{where}.max_images", entry.get("max_images", 4), int, 1, 16),
        strength=_num(f"{where}.strength", entry.get("strength", 0.6), float, 0, 1),
        frames=_num(
            f"{where}.frames", entry.get("frames", min(16, max_frames)), int, 1, max_frames
        ),
        max_frames=max_frames,
        fps=_num(f"{where}.fps", entry.get("fps", 8), int, 1, 120),
    )
