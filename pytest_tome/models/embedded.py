"""Embedded pipelines: the face models this repository trained, and tiny seeded ones.

They need no download and give bit-identical images run to run on CPU. The tiny ones are
built from configs with seeded random weights and are deliberately attention-heavy (the first
attention level sees 1024-2304 tokens), like the models token merging is meant for. Builders
import torch and diffusers only when called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pytest_tome.models import embedded_joint, embedded_sdxl, embedded_transformers

EMBEDDED_SEED = 0


def _tiny_ddpm() -> Any:
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    unet = UNet2DModel(
        sample_size=48,  # 2304 tokens at the attention level: merging pays, a call stays cheap
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D"),
        attention_head_dim=8,
        norm_num_groups=8,
    )
    return DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000))


def _tiny_ldm() -> Any:
    from diffusers import DDIMScheduler, LDMPipeline, UNet2DModel, VQModel

    vqvae = VQModel(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        latent_channels=3,
        num_vq_embeddings=64,
        norm_num_groups=8,
        sample_size=64,
    )
    unet = UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D"),
        attention_head_dim=8,
        norm_num_groups=8,
    )
    return LDMPipeline(vqvae=vqvae, unet=unet, scheduler=DDIMScheduler(num_train_timesteps=1000))


def _tiny_sd() -> Any:
    from diffusers import (
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )

    from pytest_tome.models.components import tiny_clip, tiny_vae
    from pytest_tome.models.tokenizers import clip_tokenizer

    tokenizer = clip_tokenizer()
    text_encoder = tiny_clip(tokenizer)
    unet = UNet2DConditionModel(
        sample_size=48,  # 48x48 latents and images (the one-level VAE does not upsample)
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=2,  # SD's naming: the number of heads
        norm_num_groups=8,
    )
    vae = tiny_vae()
    scheduler = PNDMScheduler(skip_prk_steps=True, steps_offset=1)
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _shipped(name: str) -> Callable[[], Any]:
    def load() -> Any:
        from pytest_tome.models.faces.shipped import load_face_model

        return load_face_model(name)

    load.__name__ = f"load_{name.replace('-', '_')}"
    return load


EMBEDDED: dict[str, Callable[[], Any]] = {
    # Trained by this repository on scikit-image's LFW faces (models/faces/): real images,
    # so their PSNR and SSIM measure what a merge does to a picture.
    "faces-ddpm": _shipped("faces-ddpm"),
    "faces-ldm": _shipped("faces-ldm"),
    # Seeded random weights: their images are noise, so their quality numbers measure how
    # sensitive a network is to a merge, not image quality.
    "tiny-ddpm": _tiny_ddpm,
    "tiny-ldm": _tiny_ldm,
    "tiny-sd": _tiny_sd,
    # SDXL: no attention at full resolution, two text encoders, added conditioning.
    "tiny-sdxl": embedded_sdxl.tiny_sdxl,
    # DiT and PixArt-α: BasicTransformerBlocks over patch tokens.
    "tiny-dit": embedded_transformers.tiny_dit,
    "tiny-pixart": embedded_transformers.tiny_pixart,
    # SD3 and Flux: joint image-text attention, the image stream merged.
    "tiny-sd3": embedded_joint.tiny_sd3,
    "tiny-flux": embedded_joint.tiny_flux,
}
TRAINED: frozenset[str] = frozenset({"faces-ddpm", "faces-ldm"})
# The main job: the thesis's two models trained on faces (quality a person can judge), SD's
# cross-attention UNet and a transformer backbone; the rest run in the tests.
DEFAULT_MODELS: tuple[str, ...] = ("faces-ddpm", "faces-ldm", "tiny-sd", "tiny-dit")


def build_embedded(name: str) -> Any:
    """Build an embedded pipeline with seeded weights; the same bits on every call."""
    import torch

    from pytest_tome.models.seeding import build_seeded

    try:
        factory = EMBEDDED[name]
    except KeyError:
        raise ValueError(
            f"unknown embedded pipeline {name!r}; known: {', '.join(EMBEDDED)}"
        ) from None
    pipe = build_seeded(EMBEDDED_SEED, factory)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()  # as from_pretrained leaves them; train mode changes kernels
    return pipe
