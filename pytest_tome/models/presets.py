"""Real-size architecture presets with random weights, for timing offline.

Timing depends on the architecture, not on the weight values, so these build the exact
configs of the models the thesis measured (google/ddpm-celebahq-256, CompVis/ldm-celebahq-256,
stable-diffusion-v1-5, and SDXL base in presets_sdxl; UNet parameter counts checked in tests/test_presets.py) without downloading
anything. Their images are noise: quality verdicts do not apply to them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from pytest_tome.models import presets_joint, presets_sdxl, presets_transformers

PRESET_SEED = 0

DDPM_CELEBAHQ_UNET: dict[str, Any] = {  # google/ddpm-celebahq-256, 113,673,219 parameters
    "sample_size": 256,
    "in_channels": 3,
    "out_channels": 3,
    "layers_per_block": 2,
    "block_out_channels": (128, 128, 256, 256, 512, 512),
    "down_block_types": (
        "DownBlock2D",
        "DownBlock2D",
        "DownBlock2D",
        "DownBlock2D",
        "AttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": (
        "UpBlock2D",
        "AttnUpBlock2D",
        "UpBlock2D",
        "UpBlock2D",
        "UpBlock2D",
        "UpBlock2D",
    ),
    "attention_head_dim": None,
    "downsample_padding": 0,
    "freq_shift": 1,
    "flip_sin_to_cos": False,
    "norm_eps": 1e-6,
}

LDM_CELEBAHQ_UNET: dict[str, Any] = {  # CompVis/ldm-celebahq-256, 274,056,163 parameters
    "sample_size": 64,
    "in_channels": 3,
    "out_channels": 3,
    "layers_per_block": 2,
    "block_out_channels": (224, 448, 672, 896),
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    "attention_head_dim": 32,
}

LDM_CELEBAHQ_VQ_F4: dict[str, Any] = {  # VQ-f4 first stage: 256x256x3 <-> 64x64x3, 8192 codes
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 3,
    "up_block_types": ("UpDecoderBlock2D",) * 3,
    "block_out_channels": (128, 256, 512),
    "layers_per_block": 2,
    "latent_channels": 3,
    "num_vq_embeddings": 8192,
    "sample_size": 256,
}

SD15_UNET: dict[str, Any] = {  # stable-diffusion-v1-5, 859,520,964 parameters
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": (
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ),
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}

SD15_VAE: dict[str, Any] = {  # the SD 1.x KL-f8 autoencoder: 512x512x3 <-> 64x64x4
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 512,
}

SD15_TEXT: dict[str, Any] = {  # CLIP ViT-L/14 text encoder
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}


def _ddpm_unet() -> Any:
    from diffusers import UNet2DModel

    return UNet2DModel(**DDPM_CELEBAHQ_UNET)


def _ldm_unet() -> Any:
    from diffusers import UNet2DModel

    return UNet2DModel(**LDM_CELEBAHQ_UNET)


def _sd15_unet() -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**SD15_UNET)


def _ddpm() -> Any:
    from diffusers import DDPMPipeline, DDPMScheduler

    return DDPMPipeline(unet=_ddpm_unet(), scheduler=DDPMScheduler(num_train_timesteps=1000))


def _ldm() -> Any:
    from diffusers import DDIMScheduler, LDMPipeline, VQModel

    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.0015,
        beta_end=0.0195,
        beta_schedule="scaled_linear",
        clip_sample=False,
    )
    return LDMPipeline(vqvae=VQModel(**LDM_CELEBAHQ_VQ_F4), unet=_ldm_unet(), scheduler=scheduler)


def _sd15() -> Any:
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    from pytest_tome.models.tokenizers import clip_tokenizer

    # The byte-level tokenizer's ids (< 514) all exist in CLIP's 49408-entry vocabulary.
    tokenizer = clip_tokenizer()
    text_config = CLIPTextConfig(
        **SD15_TEXT,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        steps_offset=1,
        set_alpha_to_one=False,
    )
    return StableDiffusionPipeline(
        vae=AutoencoderKL(**SD15_VAE),
        text_encoder=CLIPTextModel(text_config),
        tokenizer=tokenizer,
        unet=_sd15_unet(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


_PIPELINES: dict[str, Callable[[], Any]] = {
    "arch:ddpm-celebahq-256": _ddpm,
    "arch:ldm-celebahq-256": _ldm,
    "arch:sd15-512": _sd15,
    presets_sdxl.SDXL_BASE: partial(presets_sdxl.sdxl_base, SD15_VAE),
    presets_joint.SD3_MEDIUM: presets_joint.sd3_medium,
    "arch:dit-xl-2-256": partial(presets_transformers.dit_pipeline, SD15_VAE),
    "arch:pixart-alpha-512": partial(presets_transformers.pixart_pipeline, SD15_VAE),
}
_UNETS: dict[str, Callable[[], Any]] = {  # the denoiser: a UNet or a transformer
    "arch:ddpm-celebahq-256": _ddpm_unet,
    "arch:ldm-celebahq-256": _ldm_unet,
    "arch:sd15-512": _sd15_unet,
    presets_sdxl.SDXL_BASE: presets_sdxl.sdxl_base_unet,
    presets_joint.SD3_MEDIUM: presets_joint.sd3_medium_transformer,
    "arch:dit-xl-2-256": presets_transformers.dit_transformer,
    "arch:pixart-alpha-512": presets_transformers.pixart_transformer,
}
PRESETS: tuple[str, ...] = tuple(_PIPELINES)


def build_preset(name: str) -> Any:
    """The named preset's DiffusionPipeline with seeded random weights (the same on every call).

    Built on the current default device; `with torch.device("meta"):` builds it without
    allocating weights (to inspect shapes and parameter counts).
    """
    return _seeded(_lookup(_PIPELINES, name))


def preset_unet(name: str) -> Any:
    """Only the named preset's UNet, seeded like `build_preset`'s; cheaper for benchmarks."""
    return _seeded(_lookup(_UNETS, name))


def _lookup(table: dict[str, Callable[[], Any]], name: str) -> Callable[[], Any]:
    try:
        return table[name]
    except KeyError:
        raise ValueError(
            f"unknown architecture preset {name!r}; known: {', '.join(PRESETS)}"
        ) from None


def _seeded(factory: Callable[[], Any]) -> Any:
    """Run `factory` with seeded weights; the caller's random state is left as it was."""
    from pytest_tome.models.seeding import build_seeded

    return build_seeded(PRESET_SEED, factory)
