"""A tiny Stable Diffusion XL pipeline, built offline and seeded like the other embedded ones.

Shaped like SDXL base: a `DownBlock2D` first (no attention at full latent resolution), then
cross-attention levels with two transformer layers per block at the deeper one, `text_time`
added conditioning (the pooled text of the second encoder and six size/crop numbers) and
linear projections. Two tiny CLIP encoders (`CLIPTextModel`, `CLIPTextModelWithProjection`)
whose penultimate states are concatenated, as SDXL's are. 64 x 64 latents (the one-level VAE
does not downsample): its first attention level, at /2, sees 32 x 32 = 1024 tokens.
"""

from __future__ import annotations

from typing import Any

TEXT_WIDTH = 32  # each tiny CLIP; the UNet's context is both, concatenated
TIME_EMBED_DIM = 8  # addition_time_embed_dim: six numbers (size, crop, target) embedded each

TINY_SDXL_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": (16, 32, 64),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": (1, 1, 2),
    "attention_head_dim": (1, 2, 4),  # SD's naming: the number of heads per level
    "cross_attention_dim": 2 * TEXT_WIDTH,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": TIME_EMBED_DIM,
    "projection_class_embeddings_input_dim": TEXT_WIDTH + 6 * TIME_EMBED_DIM,
    "use_linear_projection": True,
    "norm_num_groups": 8,
}


def tiny_sdxl() -> Any:
    """StableDiffusionXLPipeline with two tiny CLIPs, an SDXL-shaped UNet, DDIM, no watermark."""
    from diffusers import DDIMScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    from pytest_tome.models.components import tiny_clip, tiny_vae
    from pytest_tome.models.tokenizers import clip_tokenizer

    tokenizer, tokenizer_2 = clip_tokenizer(), clip_tokenizer()
    text_encoder = tiny_clip(tokenizer)
    text_encoder_2 = tiny_clip(tokenizer_2, projection=True)
    unet = UNet2DConditionModel(**TINY_SDXL_UNET)
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return StableDiffusionXLPipeline(
        vae=tiny_vae(),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        add_watermarker=False,
    )
