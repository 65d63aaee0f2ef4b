"""Tiny SD3 and Flux pipelines: joint image-text transformers, built offline, seeded.

Both see 1024 image tokens (32 x 32 patches of 64 x 64 latents, a 64 px image) beside their text at
every attention. The builders import torch, diffusers and transformers only when called, and
are seeded by `embedded.build_embedded`. `CALL_KWARGS` are the pipeline-call arguments they
need (a short T5 sequence: the default 256-512 text tokens would dwarf the image).
"""

from __future__ import annotations

from typing import Any

CALL_KWARGS = "pytest_tome_call_kwargs"  # pipeline attribute: extra kwargs for each call
T5_TOKENS = 32
SHARPNESS = 4.0  # queries and keys scaled up: attention logits x 16


def _sharpen(transformer: Any, factor: float = SHARPNESS) -> Any:
    """Scale every attention's queries and keys by `factor`, after their norms if any.

    Random weights attend almost uniformly over 1024 tokens, so every token's output is about
    the mean of all values and merging (or a wrong unmerge) would hardly show in the images.
    Sharper attention makes each output depend on the tokens it attends to, as when trained.
    """
    import torch

    with torch.no_grad():
        for module in transformer.modules():
            for q, k in (("to_q", "to_k"), ("add_q_proj", "add_k_proj")):
                norm = "norm_q" if q == "to_q" else "norm_added_q"
                if getattr(module, q, None) is None:
                    continue
                if getattr(module, norm, None) is not None:  # RMSNorm after the projection
                    layers = (getattr(module, norm), getattr(module, norm.replace("q", "k")))
                else:
                    layers = (getattr(module, q), getattr(module, k))
                for layer in layers:
                    for param in layer.parameters():
                        param.mul_(factor)
    return transformer


def _vae(latent_channels: int) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(  # no downsampling, as tiny-sd's: 64 px <-> 64 x 64 latents
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        block_out_channels=(16,),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=1.5,
        shift_factor=0.06,
    )


def tiny_sd3() -> Any:
    """StableDiffusion3Pipeline: 2 joint blocks, two CLIP encoders and a T5, 1024 image tokens."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )

    from pytest_tome.models.components import tiny_clip, tiny_t5
    from pytest_tome.models.tokenizers import clip_tokenizer, t5_tokenizer

    clip, t5 = clip_tokenizer(), t5_tokenizer()
    transformer = SD3Transformer2DModel(
        sample_size=64,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=64,  # the T5 width; the two CLIP widths (32 + 32) are padded to it
        caption_projection_dim=32,
        pooled_projection_dim=64,  # the two CLIP projections, concatenated
        pos_embed_max_size=32,
    )
    pipe = StableDiffusion3Pipeline(
        transformer=_sharpen(transformer),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(4),
        text_encoder=tiny_clip(clip, projection=True),
        tokenizer=clip,
        text_encoder_2=tiny_clip(clip, projection=True),
        tokenizer_2=clip_tokenizer(),
        text_encoder_3=tiny_t5(t5, 64, buckets=8),
        tokenizer_3=t5,
    )
    setattr(pipe, CALL_KWARGS, {"max_sequence_length": T5_TOKENS})
    return pipe


def tiny_flux() -> Any:
    """FluxPipeline: one double- and two single-stream blocks, CLIP and T5, 1024 image tokens."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    from pytest_tome.models.components import tiny_clip, tiny_t5
    from pytest_tome.models.tokenizers import clip_tokenizer, t5_tokenizer

    clip, t5 = clip_tokenizer(), t5_tokenizer()
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,  # 4 latent channels packed 2 x 2
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,  # the T5 width
        pooled_projection_dim=32,  # the CLIP width
        guidance_embeds=True,  # as FLUX.1-dev
        axes_dims_rope=(4, 6, 6),
    )
    pipe = FluxPipeline(
        transformer=_sharpen(transformer),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(4),
        text_encoder=tiny_clip(clip),
        tokenizer=clip,
        text_encoder_2=tiny_t5(t5, 32, buckets=8),
        tokenizer_2=t5,
    )
    pipe.default_sample_size = 64  # 64 x 64 latents packed 2 x 2: 32 x 32 image tokens
    setattr(pipe, CALL_KWARGS, {"max_sequence_length": T5_TOKENS})
    return pipe
