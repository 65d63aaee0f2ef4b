"""Embedded tiny transformer pipelines (DiT, PixArt-α): diffusion over patch tokens.

Like the UNet ones in `embedded`, they are built offline with seeded weights (the caller,
`build_embedded`, seeds the RNG) and are attention-heavy: a 64x64 latent in 2x2 patches gives
1024 image tokens at every block. Builders import torch, diffusers and transformers only when
called.
"""

from __future__ import annotations

from typing import Any

from pytest_tome.models.embedded_joint import CALL_KWARGS

# Both denoisers: 2 blocks of 2 heads x 16 over a 64x64x4 latent, 2x2 patches (32 x 32 tokens).
_BACKBONE: dict[str, Any] = {
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "in_channels": 4,
    "out_channels": 8,  # learned sigma, as the published DiT and PixArt checkpoints
    "num_layers": 2,
    "sample_size": 64,
    "patch_size": 2,
}


def tiny_dit() -> Any:
    """`DiTPipeline`: class-conditional DiT (adaLN-zero, 1000 classes) and a DDIM scheduler."""
    from diffusers import DDIMScheduler, DiTPipeline, DiTTransformer2DModel

    from pytest_tome.models.components import tiny_vae

    transformer = DiTTransformer2DModel(**_BACKBONE, num_embeds_ada_norm=1000)
    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    return DiTPipeline(transformer=transformer, vae=tiny_vae(), scheduler=scheduler)


def tiny_pixart() -> Any:
    """`PixArtAlphaPipeline`: PixArt-α (adaLN-single, cross-attention) and a tiny T5 encoder."""
    from diffusers import DDIMScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel

    from pytest_tome.models.components import tiny_t5, tiny_vae
    from pytest_tome.models.tokenizers import t5_tokenizer

    tokenizer = t5_tokenizer()
    text_encoder = tiny_t5(tokenizer)
    transformer = PixArtTransformer2DModel(**_BACKBONE, cross_attention_dim=32, caption_channels=32)
    pipe = PixArtAlphaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=tiny_vae(),
        transformer=transformer,
        # DDIM, not PixArt's DPM-Solver, whose set_timesteps warns under numpy 2 here.
        scheduler=DDIMScheduler(num_train_timesteps=1000, clip_sample=False),
    )
    # Resolution binning would map 64 px to PixArt's 512 px bins; captions are plain text.
    setattr(pipe, CALL_KWARGS, {"use_resolution_binning": False, "clean_caption": False})
    return pipe
