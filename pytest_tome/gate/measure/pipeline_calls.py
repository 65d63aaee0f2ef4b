"""Patched runs: generate images from a pipeline with ToMe applied for the call only."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

PROMPT = "a photograph of a face, studio light"
CLASS_LABEL = 207  # ImageNet's golden retriever, as in diffusers' DiT example


def generate(
    pipe: Any, ratio: float, *, steps: int, seed: int, images: int, **tome_kwargs: Any
) -> np.ndarray:
    """Images [N, H, W, 3] float32 in [0, 1] from `pipe` with ToMe at `ratio`.

    ToMe is applied for this call and removed after it, even on error, so a cached
    pipeline is never left patched. Ratio 0 runs the pipeline unpatched. The same seed
    gives the same noise, so merged and unmerged images are comparable pixel by pixel.
    """
    if ratio == 0:
        return _call(pipe, steps=steps, seed=seed, images=images)
    from pytest_tome.engine import tome_applied

    with tome_applied(pipe, ratio, seed=seed, **tome_kwargs):
        return _call(pipe, steps=steps, seed=seed, images=images)


def run_pipeline(pipe: Any, *, steps: int, seed: int, images: int) -> np.ndarray:
    """One seeded call of `pipe` as it is now (patched or not): images [N, H, W, 3] in [0, 1].

    The gate applies ToMe around this call itself, so patching stays out of the timed part.
    """
    return _call(pipe, steps=steps, seed=seed, images=images)


def _call(pipe: Any, *, steps: int, seed: int, images: int) -> np.ndarray:
    # A CPU generator on every device: diffusers draws the noise on the CPU and moves it, so a
    # seed gives the same starting noise everywhere, MPS (which has no seeded generator) works,
    # and so does LDMPipeline, whose noise is drawn without a device (a CUDA generator fails).
    generator = torch.Generator("cpu").manual_seed(seed)
    params = inspect.signature(pipe.__call__).parameters
    kwargs: dict[str, Any] = {
        "num_inference_steps": steps,
        "generator": generator,
        "output_type": "np",
    }
    if "prompt" in params:
        kwargs.update(prompt=PROMPT, num_images_per_prompt=images)
    elif "class_labels" in params:  # class-conditional (DiT): one image per label
        kwargs.update(class_labels=[CLASS_LABEL] * images)
    else:
        kwargs.update(batch_size=images)
    # A pipeline may name its own call arguments (the tiny SD3 and Flux: a short T5 sequence).
    kwargs.update(getattr(pipe, "pytest_tome_call_kwargs", None) or {})
    with torch.inference_mode():
        out = pipe(**kwargs).images
    return np.asarray(out, dtype=np.float32)


def denoiser_forward(pipe: Any) -> Callable[[], object]:
    """One denoiser forward on seeded noise at the model's own size, as a closure for timing.

    Each gets the batch its pipeline gives it: a UNet with cross-attention, DiT and PixArt-α
    a classifier-free-guidance batch of 2 (with 77 text tokens, a class label and the null
    class, or PixArt's 120 T5 tokens); SD3 and Flux transformers their own (`joint_inputs`).
    """
    generator = torch.Generator("cpu").manual_seed(0)
    from pytest_tome.models.conditioning import added_cond_kwargs

    if getattr(pipe, "unet", None) is None:
        from pytest_tome.gate.measure.joint_inputs import joint_forward_inputs

        joint = joint_forward_inputs(pipe, generator)
        if joint is not None:
            transformer = pipe.transformer

            def forward_joint() -> object:
                with torch.inference_mode():
                    return transformer(**joint)

            return forward_joint
    model = pipe.unet if getattr(pipe, "unet", None) is not None else pipe.transformer
    config = model.config
    size = config.sample_size
    height, width = (size, size) if isinstance(size, int) else size
    kwargs: dict[str, Any] = {}
    batch = 1
    if getattr(config, "caption_channels", None):  # PixArt-α: T5 caption embeddings
        batch = 2
        context = torch.randn(batch, 120, config.caption_channels, generator=generator)
        kwargs["encoder_hidden_states"] = context.to(model.device, model.dtype)
        kwargs["added_cond_kwargs"] = {"resolution": None, "aspect_ratio": None}
    elif getattr(config, "cross_attention_dim", None):
        batch = 2
        context = torch.randn(batch, 77, config.cross_attention_dim, generator=generator)
        kwargs["encoder_hidden_states"] = context.to(model.device, model.dtype)
        kwargs.update(added_cond_kwargs(model, batch, generator))  # SDXL's pooled text, sizes
    elif getattr(pipe, "unet", None) is None and getattr(config, "num_embeds_ada_norm", None):
        batch = 2  # DiT: a class and the null class (id num_embeds_ada_norm)
        labels = [CLASS_LABEL % config.num_embeds_ada_norm, config.num_embeds_ada_norm]
        kwargs["class_labels"] = torch.tensor(labels, device=model.device)
    sample = torch.randn(batch, config.in_channels, height, width, generator=generator)
    sample = sample.to(model.device, model.dtype)
    timestep = torch.tensor([500] * batch, device=model.device)

    def forward() -> object:
        with torch.inference_mode():
            return model(sample, timestep=timestep, **kwargs)

    return forward


def merged_parts(patch: Any) -> list[torch.nn.Module]:
    """The modules whose tokens a patch merges: each attention layer, or for
    BasicTransformerBlocks (either backend) the sub-layers its merge_* flags select
    (self-attention by default)."""
    settings = patch.settings
    parts: list[torch.nn.Module] = []
    for layer in patch.layers:
        if not hasattr(layer.module, "attn1"):  # not a BasicTransformerBlock
            parts.append(layer.module)
            continue
        block = layer.module
        chosen = [
            (settings.merge_attn, "attn1"),
            (settings.merge_crossattn, "attn2"),
            (settings.merge_mlp, "ff"),
        ]
        parts.extend(
            getattr(block, name)
            for flag, name in chosen
            if flag and getattr(block, name, None) is not None
        )
    return parts
