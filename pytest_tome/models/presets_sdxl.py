"""SDXL base 1.0 at 1024 px with random weights, for timing the most used open UNet offline.

The published configs of stabilityai/stable-diffusion-xl-base-1.0, built offline. The UNet
has 2,567,463,684 parameters (10.3 GB in float32); with CLIP ViT-L (123,060,480), OpenCLIP
bigG with projection (694,659,840) and the KL-f8 VAE (83,653,863) the pipeline has
3,468,837,867 (13.9 GB of float32 weights). Its first attention sits at /2: 64 x 64 = 4096
tokens at 1024 px. Nothing heavy is imported until a builder is called.
"""

from __future__ import annotations

from typing import Any

from pytest_tome.models.presets_joint import CLIP_G, CLIP_L

SDXL_BASE = "arch:sdxl-base-1024"

SDXL_BASE_UNET: dict[str, Any] = {  # 2,567,463,684 parameters
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "use_linear_projection": True,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "norm_eps": 1e-5,
    "norm_num_groups": 32,
}


def sdxl_base_unet() -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**SDXL_BASE_UNET)


def sdxl_base(vae_config: dict[str, Any]) -> Any:
    """StableDiffusionXLPipeline: SDXL base's UNet, both CLIPs, the KL-f8 VAE, Euler."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from pytest_tome.models.tokenizers import clip_tokenizer

    # The byte-level tokenizer's ids (< 514) all exist in CLIP's 49408-entry vocabulary.
    tokenizer = clip_tokenizer()
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vae = {**vae_config, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}
    with torch.device("cpu"):  # its sigmas are copied to the CPU: not on the meta device
        scheduler = EulerDiscreteScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            steps_offset=1,
            timestep_spacing="leading",
        )
    return StableDiffusionXLPipeline(
        vae=AutoencoderKL(**vae),
        text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L, **ids)),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_G, **ids)),
        tokenizer=tokenizer,
        tokenizer_2=clip_tokenizer(),
        unet=sdxl_base_unet(),
        scheduler=scheduler,
        add_watermarker=False,
    )
