"""Added conditioning a UNet's forward needs beside its text, as its pipeline would pass it.

SDXL's UNet (`addition_embed_type="text_time"`) takes the pooled text embedding of its second
encoder and six numbers (original size, crop corner, target size) through `added_cond_kwargs`;
a UNet without added conditioning needs nothing. The headroom's denoiser forward asks here, so
the gate has no architecture special case.
"""

from __future__ import annotations

from typing import Any

import torch

LATENT_TO_PIXELS = 8  # the KL-f8 autoencoder of SD and SDXL


def added_cond_kwargs(model: Any, batch: int, generator: torch.Generator) -> dict[str, Any]:
    """`{"added_cond_kwargs": ...}` for `model(sample, t, context, **it)`; {} if none needed."""
    config = model.config
    if getattr(config, "addition_embed_type", None) != "text_time":
        return {}
    time_ids = 6  # (height, width) original, (top, left) crop, (height, width) target
    pooled = (
        config.projection_class_embeddings_input_dim - time_ids * config.addition_time_embed_dim
    )
    size = config.sample_size
    height, width = (size, size) if isinstance(size, int) else size
    ids = [height * LATENT_TO_PIXELS, width * LATENT_TO_PIXELS, 0, 0]
    ids += [height * LATENT_TO_PIXELS, width * LATENT_TO_PIXELS]
    text_embeds = torch.randn(batch, pooled, generator=generator)
    return {
        "added_cond_kwargs": {
            "text_embeds": text_embeds.to(model.device, model.dtype),
            "time_ids": torch.tensor([ids] * batch, device=model.device, dtype=model.dtype),
        }
    }
