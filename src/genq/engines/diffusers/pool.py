"""Warm pipelines: one pool per worker process keeps loaded models between jobs.

The first job of a model pays its load; later ones find it here. A model's pipelines
for other tasks (image2image, inpaint) are made with `AutoPipelineFor*.from_pipe`,
sharing its weights. Past the memory budget (`GENQ_GPU_MEMORY_GB`) the least recently
used models are unloaded. What a model takes is measured when it loads: CUDA memory
allocated on a GPU; on the CPU the process's RSS growth (at least the size of its
weights, as RSS barely moves for a small model). One lock per device runs one job on
it at a time: two diffusion runs sharing a GPU are each slower than one, and
pipelines are not safe to call from two threads.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from genq.engines.contract import EngineError
from genq.engines.diffusers.config import ModelSpec

log = logging.getLogger(__name__)
GB = 1 << 30
AUTO = {
    "text2image": "AutoPipelineForText2Image",
    "image2image": "AutoPipelineForImage2Image",
    "inpaint": "AutoPipelineForInpainting",
}
# tasks with no AutoPipeline: the class a model is loaded with unless `pipeline` says
CLASSES = {
    **AUTO,
    "upscale": "StableDiffusionUpscalePipeline",
    "text2video": "TextToVideoSDPipeline",
}


@dataclass
class Loaded:
    """One model in the pool: its pipelines by task, sharing components."""

    spec: ModelSpec
    device: str
    pipes: dict[str, Any]
    bytes: int
    load_s: float
    last_used: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Lease:
    """A pipeline handed to one job, with how it was got (for the output's metadata)."""

    pipe: Any
    device: str
    warm: bool  # found loaded: this job paid no load
    load_s: float  # the load this job paid (0 when warm)
    loads: int  # how many times this process has loaded the model
    evicted: tuple[str, ...]  # models unloaded to make room for it


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def offline(setting: bool) -> bool:
    """GENQ_HF_OFFLINE or HF_HUB_OFFLINE: load only what is on disk."""
    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return setting or env in ("1", "true", "yes", "on")


def _rss() -> int:
    try:
        import psutil  # type: ignore[import-untyped]

        return int(psutil.Process().memory_info().rss)
    except ImportError:  # pragma: no cover - psutil is a dependency of accelerate
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _weights_bytes(pipe: Any) -> int:
    import torch

    total = 0
    for part in getattr(pipe, "components", {}).values():
        if isinstance(part, torch.nn.Module):
            total += sum(t.numel() * t.element_size() for t in part.parameters())
            total += sum(t.numel() * t.element_size() for t in part.buffers())
    return total


def _used(device: str) -> int:
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.memory_allocated(device))
    return _rss()


class Pool:
    """Loaded models of this process, least recently used first."""

    def __init__(self, budget_gb: float | None = None, *, hf_offline: bool = False) -> None:
        self.budget = int(budget_gb * GB) if budget_gb else None
        self.hf_offline = hf_offline
        self.models: OrderedDict[ModelSpec, Loaded] = OrderedDict()
        self.loads: dict[ModelSpec, int] = {}
        self.evictions = 0
        self._lock = threading.Lock()  # the pool's maps; loads happen under a device lock
        self._devices: dict[str, threading.Lock] = {}

    def device_lock(self, spec: ModelSpec) -> threading.Lock:
        device = resolve_device(spec.device)
        with self._lock:
            return self._devices.setdefault(device, threading.Lock())

    @property
    def used_bytes(self) -> int:
        return sum(m.bytes for m in self.models.values())

    def get(self, spec: ModelSpec, task: str, logger: logging.Logger | None = None) -> Lease:
        """The pipeline of `spec` for `task`, loading the model if needed. Call with the
        device lock held. A model that cannot load raises EngineError model_load_failed."""
        say = logger or log
        if resolve_device(spec.device) == "cpu":
            import torch

            # OpenMP threads spinning against the worker's other threads (and other
            # processes) make a CPU run many times slower than one thread
            torch.set_num_threads(spec.threads)
        with self._lock:
            loaded = self.models.get(spec)
            if loaded is not None:
                self.models.move_to_end(spec)
                loaded.last_used = time.monotonic()
        warm = loaded is not None
        evicted: tuple[str, ...] = ()
        if loaded is None:
            loaded = self._load(spec, task, say)
            evicted = self._fit(spec, say)
        pipe = loaded.pipes.get(task)
        if pipe is None:
            pipe = loaded.pipes[task] = self._derive(loaded, task)
        return Lease(
            pipe=pipe,
            device=loaded.device,
            warm=warm,
            load_s=0.0 if warm else loaded.load_s,
            loads=self.loads.get(spec, 0),
            evicted=evicted,
        )

    def _load(self, spec: ModelSpec, task: str, say: logging.Logger) -> Loaded:
        if offline(self.hf_offline):
            os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub is first imported
        started = time.monotonic()  # the first load also pays importing torch and diffusers
        import diffusers
        import torch

        device = resolve_device(spec.device)
        say.info("loading %s (%s on %s)", spec.model, spec.dtype, device)
        before = _used(device)
        try:
            cls = getattr(diffusers, spec.pipeline or CLASSES[task], None)
            if cls is None:
                raise ValueError(f"diffusers has no pipeline class {spec.pipeline!r}")
            options: dict[str, Any] = {"dtype": getattr(torch, spec.dtype)}
            if spec.variant:
                options["variant"] = spec.variant
            if offline(self.hf_offline):
                options["local_files_only"] = True
            pipe = cls.from_pretrained(spec.model, **options)
            pipe.to(device)
            pipe.set_progress_bar_config(disable=True)
        except Exception as exc:
            gc.collect()
            reason = f"{type(exc).__name__}: {exc}".strip()
            say.error("model %s failed to load: %s", spec.model, reason)
            raise EngineError(
                f"model {spec.model} failed to load: {reason}"[:2000], code="model_load_failed"
            ) from exc
        size = max(_used(device) - before, _weights_bytes(pipe))
        took = time.monotonic() - started
        loaded = Loaded(spec=spec, device=device, pipes={task: pipe}, bytes=size, load_s=took)
        with self._lock:
            self.models[spec] = loaded
            self.loads[spec] = self.loads.get(spec, 0) + 1
            count = self.loads[spec]
        say.info("loaded %s in %.2fs (%.1f MB; load #%d)", spec.model, took, size / 2**20, count)
        return loaded

    def _derive(self, loaded: Loaded, task: str) -> Any:
        """Another task's pipeline on the same components (no new weights)."""
        import diffusers

        base = next(iter(loaded.pipes.values()))
        if task not in AUTO:
            raise EngineError(
                f"{loaded.spec.model} is loaded as {type(base).__name__}, which cannot "
                f"serve {task}: give that engine its own model or `pipeline`",
                code="model_load_failed",
            )
        pipe = getattr(diffusers, AUTO[task]).from_pipe(base)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _fit(self, keep: ModelSpec, say: logging.Logger) -> tuple[str, ...]:
        """Unload least recently used models until the pool fits its budget (the model
        just loaded stays, even alone over it)."""
        if self.budget is None:
            return ()
        gone: list[str] = []
        with self._lock:
            while self.used_bytes > self.budget:
                victim = next((s for s in self.models if s != keep), None)
                if victim is None:
                    break
                old = self.models.pop(victim)
                self.evictions += 1
                gone.append(victim.model)
                say.info(
                    "evicted %s (%.1f MB, least recently used) to fit GENQ_GPU_MEMORY_GB",
                    victim.model,
                    old.bytes / 2**20,
                )
                old.pipes.clear()
                del old
        if gone:
            gc.collect()
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        return tuple(gone)
