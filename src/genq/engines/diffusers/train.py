"""diffusers train-lora: a LoRA (peft) fine-tuned on a few pictures with a trigger word.

The engine trains on its base engine's model, taken from the worker's pool (no second
copy in memory): the LoRA layers are added to the UNet for the job and deleted after,
so the base model's jobs never see them. Each step's loss goes to the job's log. The
result, a safetensors file in diffusers' LoRA layout with genq's metadata (base model,
trigger word), is the `weights` output: the genq model's artifact, which the base
text2image engine loads when a job names the model in `model_id`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from PIL import Image, ImageOps
from pydantic import BaseModel, ConfigDict, Field, create_model

from genq.engines.contract import FileRef, JobContext
from genq.engines.demo._common import Seed, load_rgb, open_image
from genq.engines.diffusers.config import EngineSpec
from genq.engines.diffusers.engine import LORA_KIND, SpecEngine
from genq.engines.diffusers.pool import Pool

ADAPTER = "genq_train"
TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
_TRIGGER = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


def input_model(spec: EngineSpec) -> type[BaseModel]:
    fields: dict[str, Any] = {
        "images": (
            list[FileRef],
            Field(min_length=1, max_length=50, description="1 to 50 training pictures."),
        ),
        "trigger": (
            str,
            Field(
                default="sks",
                pattern=_TRIGGER.pattern,
                description="The word that calls the trained subject up in a prompt.",
            ),
        ),
        "caption": (
            str | None,
            Field(
                default=None,
                max_length=500,
                description="Caption of the pictures; default 'a photo of <trigger>'.",
            ),
        ),
        "name": (str | None, Field(default=None, max_length=100, description="A name.")),
        "steps": (
            int,
            Field(default=spec.steps, ge=1, le=spec.max_steps, description="Training steps."),
        ),
        "learning_rate": (
            float,
            Field(default=spec.learning_rate, gt=0, le=1, description="AdamW learning rate."),
        ),
        "rank": (int, Field(default=spec.rank, ge=1, le=256, description="LoRA rank.")),
        "seed": (Seed, None),
    }
    title = "".join(p.capitalize() for p in spec.name.replace("/", "-").split("-")) + "Input"
    model: type[BaseModel] = create_model(title, __config__=ConfigDict(extra="forbid"), **fields)
    return model


class TrainLora(SpecEngine):
    """Trains a LoRA of a configured text2image model."""

    task = "train"
    media = ("other",)

    def __init__(self, spec: EngineSpec, pool: Pool) -> None:
        super().__init__(spec, pool, input_model(spec))

    def run(self, ctx: JobContext) -> None:
        data = ctx.input
        pictures = [load_rgb(open_image(ctx, ref), ref) for ref in data.images]
        with self.pool.device_lock(self.spec.model):
            ctx.raise_if_canceled()
            lease = self.pool.get(self.spec.model, "text2image", ctx.logger)
            unet = lease.pipe.unet
            try:
                state, losses = self._train(ctx, lease.pipe, lease.device, pictures, data)
            finally:
                if ADAPTER in (getattr(unet, "peft_config", None) or {}):
                    unet.delete_adapters(ADAPTER)
                unet.eval()
        info = {
            "base_model": self.spec.model.model,
            "base_engine": self.spec.base,
            "trigger": data.trigger,
            "caption": data.caption or f"a photo of {data.trigger}",
            "rank": data.rank,
            "steps": data.steps,
            "learning_rate": data.learning_rate,
            "images": len(pictures),
            "name": data.name,
        }
        from safetensors.torch import save_file

        path = ctx.workdir / "weights.safetensors"
        save_file(state, str(path), metadata={"format": "pt", LORA_KIND: json.dumps(info)})
        ctx.save_output(
            "weights",
            path,
            "application/octet-stream",
            kind="other",
            format="safetensors",
            final_loss=round(losses[-1], 6),
            **{k: v for k, v in info.items() if k not in ("caption", "name")},
        )

    def _train(
        self, ctx: JobContext, pipe: Any, device: str, pictures: list[Image.Image], data: Any
    ) -> tuple[dict[str, Any], list[float]]:
        import numpy as np
        import torch
        import torch.nn.functional as F
        from diffusers import DDPMScheduler
        from diffusers.utils.state_dict_utils import convert_state_dict_to_diffusers
        from peft import LoraConfig
        from peft.utils import get_peft_model_state_dict

        seed = data.seed if data.seed is not None else 0
        gen = torch.Generator("cpu").manual_seed(seed)
        unet, vae, text_encoder, tokenizer = (
            pipe.unet,
            pipe.vae,
            pipe.text_encoder,
            pipe.tokenizer,
        )
        res = self.spec.resolution
        batch = []
        for im in pictures:
            im = ImageOps.fit(im, (res, res), Image.Resampling.LANCZOS)
            arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
            batch.append(torch.from_numpy(arr).permute(2, 0, 1))
        caption = data.caption or f"a photo of {data.trigger}"
        with torch.no_grad():
            pixels = torch.stack(batch).to(device, dtype=vae.dtype)
            dist = vae.encode(pixels).latent_dist
            latents = dist.mean * vae.config.scaling_factor
            ids = tokenizer(
                caption,
                padding="max_length",
                max_length=tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids.to(device)
            hidden = text_encoder(ids)[0]
        noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)  # type: ignore[no-untyped-call]
        unet.requires_grad_(False)
        unet.add_adapter(
            LoraConfig(
                r=data.rank,
                lora_alpha=data.rank,
                init_lora_weights="gaussian",
                target_modules=TARGETS,
            ),
            adapter_name=ADAPTER,
        )
        params = [p for p in unet.parameters() if p.requires_grad]
        for p in params:  # LoRA weights train in float32 even on a float16 model
            p.data = p.data.float()
        optimizer = torch.optim.AdamW(params, lr=data.learning_rate)
        unet.train()
        losses: list[float] = []
        steps = data.steps
        train_steps = int(noise_scheduler.config.num_train_timesteps)
        for step in range(steps):
            ctx.raise_if_canceled()
            k = step % len(latents)
            x0 = latents[k : k + 1]
            noise = torch.randn(x0.shape, generator=gen).to(device, x0.dtype)
            t = torch.randint(0, train_steps, (1,), generator=gen).to(device)
            noisy = noise_scheduler.add_noise(x0, noise, t)
            if noise_scheduler.config.prediction_type == "v_prediction":
                target = noise_scheduler.get_velocity(x0, noise, t)
            else:
                target = noise
            pred = unet(noisy, t, hidden).sample
            loss = F.mse_loss(pred.float(), target.float())
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            value = float(loss.detach().item())
            losses.append(value)
            ctx.logger.info("step %d/%d loss %.6f", step + 1, steps, value)
            ctx.progress(100.0 * (step + 1) / steps * 0.99, f"step {step + 1}/{steps}")
        peft_state = get_peft_model_state_dict(unet, adapter_name=ADAPTER)
        lora = convert_state_dict_to_diffusers(peft_state)  # type: ignore[no-untyped-call]
        state = {f"unet.{k}": v.detach().to("cpu").contiguous() for k, v in lora.items()}
        return state, losses
