"""A tiny Stable Diffusion pipeline with random weights, saved with `save_pretrained`:
the same files a hub model has (unet, vae, text_encoder, tokenizer, scheduler), small
enough to run a step in milliseconds on the CPU. Nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path

WORDS = [
    "a",
    "red",
    "fox",
    "blue",
    "sky",
    "cat",
    "dog",
    "tree",
    "house",
    "sun",
    "moon",
    "green",
    "river",
    "photo",
    "of",
    "sks",
    "person",
]


def write_tokenizer(where: Path) -> None:
    """A byte-level BPE vocabulary of single characters plus a few words."""
    where.mkdir(parents=True, exist_ok=True)
    chars = sorted(set("".join(WORDS)) | set("abcdefghijklmnopqrstuvwxyz0123456789.,!?'"))
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    merges = []
    for word in WORDS:
        # merge left to right: "f o x</w>" -> "fo x</w>" -> "fox</w>"
        parts = [*list(word[:-1]), word[-1] + "</w>"]
        while len(parts) > 1:
            pair = (parts[0], parts[1])
            merged = pair[0] + pair[1]
            line = f"{pair[0]} {pair[1]}"
            if line not in merges:
                merges.append(line)
            vocab.setdefault(merged, len(vocab))
            parts = [merged, *parts[2:]]
    (where / "vocab.json").write_text(json.dumps(vocab))
    (where / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def build(where: Path, *, seed: int = 0, sample_size: int = 16) -> Path:
    """Save a tiny random-weight StableDiffusionPipeline in `where` and return it."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=4,
        attention_head_dim=2,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=sample_size * 2,
    )
    tok_dir = where / "_tok"
    write_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer(
        vocab_file=str(tok_dir / "vocab.json"),
        merges_file=str(tok_dir / "merges.txt"),
        model_max_length=77,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            hidden_size=32,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=2,
            pad_token_id=1,
            vocab_size=max(len(tokenizer), 1000),
            max_position_embeddings=77,
        )
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(where)
    return where


def _text_parts(where: Path) -> tuple[object, object]:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    write_tokenizer(where / "_tok")
    tokenizer = CLIPTokenizer(
        vocab_file=str(where / "_tok" / "vocab.json"),
        merges_file=str(where / "_tok" / "merges.txt"),
        model_max_length=77,
    )
    config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        pad_token_id=1,
        vocab_size=1000,
        max_position_embeddings=77,
    )
    return CLIPTextModel(config), tokenizer


def build_upscaler(where: Path, *, seed: int = 0) -> Path:
    """A tiny StableDiffusionUpscalePipeline (the x4 upscaler's shape: the UNet takes
    the latents and the low-resolution picture, 7 channels; the VAE scales by 4)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableDiffusionUpscalePipeline,
        UNet2DConditionModel,
    )

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=16,
        in_channels=7,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=4,
        attention_head_dim=2,
        num_class_embeds=351,  # the noise level, as in the real upscaler
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=4,
        norm_num_groups=4,
        scaling_factor=0.08333,
    )
    text_encoder, tokenizer = _text_parts(where)
    pipe = StableDiffusionUpscalePipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        low_res_scheduler=DDPMScheduler(),
        scheduler=DDIMScheduler(prediction_type="v_prediction"),
        max_noise_level=350,
    )
    pipe.save_pretrained(where)
    return where


def build_video(where: Path, *, seed: int = 0) -> Path:
    """A tiny TextToVideoSDPipeline (UNet3DConditionModel)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel

    torch.manual_seed(seed)
    unet = UNet3DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
    )
    text_encoder, tokenizer = _text_parts(where)
    pipe = TextToVideoSDPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False
        ),
    )
    pipe.save_pretrained(where)
    return where
