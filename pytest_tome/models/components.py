"""Tiny shared parts of the embedded pipelines: CLIP and T5 text encoders, a KL autoencoder.

Built with whatever global RNG state the caller seeded (`embedded.build_embedded`), so
the same call order gives the same weights.
"""

from __future__ import annotations

from typing import Any


def tiny_clip(tokenizer: Any, *, projection: bool = False) -> Any:
    """A 2-layer, 32-wide CLIP text encoder (with a 32-wide projection if `projection`)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        projection_dim=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def tiny_t5(tokenizer: Any, d_model: int = 32, *, buckets: int = 32) -> Any:
    """A 2-layer T5 encoder of width `d_model` with `buckets` relative-position buckets."""
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=d_model,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=buckets,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=0,
        )
    )


def tiny_vae() -> Any:
    """A one-level KL autoencoder: 64x64x3 images <-> 64x64x4 latents."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        block_out_channels=(16,),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
    )
