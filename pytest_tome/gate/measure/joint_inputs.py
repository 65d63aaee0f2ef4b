"""Seeded inputs for one forward of an SD3 or Flux transformer, as its pipeline would call it.

The headroom times one denoiser forward; these give it the shapes a pipeline call gives the
model at its default size: SD3 a classifier-free-guidance batch of 2 with CLIP + T5 text
tokens, Flux a batch of 1 with packed latents, position ids and (FLUX.1-dev) guidance.
"""

from __future__ import annotations

from typing import Any

import torch

SD3_TEXT_TOKENS = 77 + 256  # CLIP + T5 at StableDiffusion3Pipeline's default
FLUX_TEXT_TOKENS = 512  # FluxPipeline's default max_sequence_length


def _text_tokens(pipe: Any, clip: int, default: int) -> int:
    t5 = (getattr(pipe, "pytest_tome_call_kwargs", None) or {}).get("max_sequence_length")
    return default if t5 is None else clip + t5


def joint_forward_inputs(pipe: Any, generator: torch.Generator) -> dict[str, Any] | None:
    """Keyword arguments for `pipe.transformer(**kwargs)`; None if it is not SD3 or Flux."""
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel

    model = pipe.transformer
    config = model.config

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(model.device, model.dtype)

    if isinstance(model, SD3Transformer2DModel):
        batch, size = 2, config.sample_size
        # Without T5 the pipeline puts 77 zero tokens in place of T5's (diffusers' low-memory SD3).
        t5_less = getattr(pipe, "text_encoder_3", True) is None
        text = 77 + 77 if t5_less else _text_tokens(pipe, 77, SD3_TEXT_TOKENS)
        return {
            "hidden_states": randn(batch, config.in_channels, size, size),
            "encoder_hidden_states": randn(batch, text, config.joint_attention_dim),
            "pooled_projections": randn(batch, config.pooled_projection_dim),
            "timestep": torch.full((batch,), 500.0, device=model.device),
        }
    if isinstance(model, FluxTransformer2DModel):
        side = getattr(pipe, "default_sample_size", 128) // 2  # latents packed 2 x 2
        text = _text_tokens(pipe, 0, FLUX_TEXT_TOKENS)
        rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
        img_ids = torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).reshape(-1, 3)
        kwargs = {
            "hidden_states": randn(1, side * side, config.in_channels),
            "encoder_hidden_states": randn(1, text, config.joint_attention_dim),
            "pooled_projections": randn(1, config.pooled_projection_dim),
            "timestep": torch.full((1,), 0.5, device=model.device),
            "img_ids": img_ids.to(model.device, model.dtype),
            "txt_ids": torch.zeros(text, 3, device=model.device, dtype=model.dtype),
        }
        if config.guidance_embeds:
            kwargs["guidance"] = torch.full((1,), 3.5, device=model.device)
        return kwargs
    return None
