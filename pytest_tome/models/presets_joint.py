"""SD3-medium at 1024 px with random weights, for timing joint attention at real scale.

The published configs of stabilityai/stable-diffusion-3-medium-diffusers, built offline.
The transformer has 2,028,328,000 parameters (8.1 GB in float32). The pipeline leaves out the
T5-XXL encoder (4,762,310,656 parameters, 19 GB in float32), as diffusers documents for
low-memory SD3: the transformer then gets zeros in place of T5's tokens, so it still sees
4096 image tokens beside 77 + 77 text tokens, and the whole pipeline (2.93 B parameters,
11.7 GB) fits a 24 GiB machine. With T5 it would not; nor would FLUX.1-dev's transformer
alone (11,901,408,320 parameters, 48 GB in float32, 24 GB in bfloat16).
Nothing heavy is imported until a builder is called.
"""

from __future__ import annotations

from typing import Any

SD3_MEDIUM = "arch:sd3-medium-1024"

SD3_MEDIUM_TRANSFORMER: dict[str, Any] = {  # 2,028,328,000 parameters
    "sample_size": 128,
    "patch_size": 2,
    "in_channels": 16,
    "out_channels": 16,
    "num_layers": 24,
    "attention_head_dim": 64,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "caption_projection_dim": 1536,
    "pooled_projection_dim": 2048,
    "pos_embed_max_size": 192,
}

SD3_VAE: dict[str, Any] = {  # 16 latent channels, 8x downsampling; 83,819,683 parameters
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 16,
    "sample_size": 1024,
    "scaling_factor": 1.5305,
    "shift_factor": 0.0609,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
}

CLIP_L: dict[str, Any] = {  # CLIP ViT-L/14 with projection, 123,650,304 parameters
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}

CLIP_G: dict[str, Any] = {  # OpenCLIP bigG/14 with projection, 694,659,840 parameters
    "vocab_size": 49408,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}


def sd3_medium_transformer() -> Any:
    from diffusers import SD3Transformer2DModel

    return SD3Transformer2DModel(**SD3_MEDIUM_TRANSFORMER)


def sd3_medium() -> Any:
    """StableDiffusion3Pipeline: SD3-medium's transformer, VAE and both CLIPs; no T5."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from pytest_tome.models.tokenizers import clip_tokenizer

    # The byte-level tokenizer's ids (< 514) all exist in CLIP's 49408-entry vocabulary.
    tokenizer = clip_tokenizer()
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    return StableDiffusion3Pipeline(
        transformer=sd3_medium_transformer(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=AutoencoderKL(**SD3_VAE),
        text_encoder=CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_L, **ids)),
        tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_G, **ids)),
        tokenizer_2=clip_tokenizer(),
        text_encoder_3=None,
        tokenizer_3=None,
    )
