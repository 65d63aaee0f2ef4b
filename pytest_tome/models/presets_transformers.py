"""Real-size transformer-backbone presets (DiT-XL/2, PixArt-α) with random weights.

The configs are the published ones as diffusers names them; parameter counts are checked in
tests/test_presets.py. Both decode with SD's KL-f8 autoencoder, as the released pipelines do.
PixArt-α's text encoder is a stand-in: T5-XXL's width (4096, so the caption projection is the
real one) but one layer instead of 24, because the 4.7B-parameter encoder runs once per prompt
and does not decide the denoising time ToMe changes.
"""

from __future__ import annotations

from typing import Any

DIT_XL_2_256: dict[str, Any] = {  # facebook/DiT-XL-2-256: 749,826,464 parameters in diffusers
    "num_attention_heads": 16,
    "attention_head_dim": 72,
    "in_channels": 4,
    "out_channels": 8,  # learned sigma
    "num_layers": 28,
    "sample_size": 32,  # 256 px / 8: 16 x 16 = 256 tokens of 2 x 2 patches
    "patch_size": 2,
    "num_embeds_ada_norm": 1000,
    "norm_type": "ada_norm_zero",
}

PIXART_ALPHA_512: dict[str, Any] = {  # PixArt-alpha/PixArt-XL-2-512x512: 610,856,096 parameters
    "num_attention_heads": 16,
    "attention_head_dim": 72,
    "in_channels": 4,
    "out_channels": 8,
    "num_layers": 28,
    "cross_attention_dim": 1152,
    "sample_size": 64,  # 512 px / 8: 32 x 32 = 1024 tokens
    "patch_size": 2,
    "caption_channels": 4096,  # T5-XXL
    "norm_type": "ada_norm_single",
}

T5_XXL_WIDTH_ONE_LAYER: dict[str, Any] = {  # google/t5-v1_1-xxl's sizes, 1 of its 24 layers
    "vocab_size": 32128,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 1,
    "num_heads": 64,
    "feed_forward_proj": "gated-gelu",
}


def dit_transformer() -> Any:
    from diffusers import DiTTransformer2DModel

    return DiTTransformer2DModel(**DIT_XL_2_256)


def pixart_transformer() -> Any:
    from diffusers import PixArtTransformer2DModel

    return PixArtTransformer2DModel(**PIXART_ALPHA_512)


def dit_pipeline(vae_config: dict[str, Any]) -> Any:
    """DiTPipeline: DiT-XL/2 at 256 px, decoding with the KL-f8 autoencoder `vae_config`."""
    from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline

    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    vae = AutoencoderKL(**vae_config)
    return DiTPipeline(transformer=dit_transformer(), vae=vae, scheduler=scheduler)


def pixart_pipeline(vae_config: dict[str, Any]) -> Any:
    """PixArtAlphaPipeline: PixArt-α at 512 px, the stand-in T5 and the autoencoder."""
    from diffusers import AutoencoderKL, DDIMScheduler, PixArtAlphaPipeline
    from transformers import T5Config, T5EncoderModel

    from pytest_tome.models.embedded_joint import CALL_KWARGS
    from pytest_tome.models.tokenizers import t5_tokenizer

    # DDIM, not PixArt's DPM-Solver, whose set_timesteps warns under numpy 2 here.
    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    tokenizer = t5_tokenizer()  # its ids all exist in T5's 32128-entry vocabulary
    text_encoder = T5EncoderModel(
        T5Config(
            **T5_XXL_WIDTH_ONE_LAYER,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    pipe = PixArtAlphaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=AutoencoderKL(**vae_config),
        transformer=pixart_transformer(),
        scheduler=scheduler,
    )
    setattr(pipe, CALL_KWARGS, {"clean_caption": False})  # no bs4/ftfy here
    return pipe
