"""diffusers engines: Stable Diffusion-style pipelines on the worker's own GPU (or CPU).

Configured with `GENQ_DIFFUSERS` (see `config`): each entry is an engine serving one
task (`text2image`, `image2image`, `inpaint`) on a model (a hub id or a local
directory), or a `train-lora` engine training LoRAs for a text2image entry. torch and
diffusers are imported only when a job runs: a server with none configured does not
need them. The engines of one `Genq` share one pool of warm pipelines (see `pool`).
"""

from __future__ import annotations

from typing import Any

from genq.engines.contract import Engine
from genq.engines.diffusers.config import DiffusersConfigError, EngineSpec, parse
from genq.engines.diffusers.pool import Pool

__all__ = ["DiffusersConfigError", "EngineSpec", "Pool", "engines", "parse"]


def engines(
    config: dict[str, Any], *, memory_gb: float | None = None, hf_offline: bool = False
) -> dict[str, Engine]:
    """The engines `GENQ_DIFFUSERS` describes, sharing one pool (empty when unset)."""
    specs = parse(config)
    if not specs:
        return {}
    from genq.engines.diffusers.engine import DiffusersEngine
    from genq.engines.diffusers.train import TrainLora

    pool = Pool(memory_gb, hf_offline=hf_offline)
    made: dict[str, Engine] = {}
    for name, spec in specs.items():
        made[name] = (
            TrainLora(spec, pool) if spec.task == "train-lora" else DiffusersEngine(spec, pool)
        )
    return made
