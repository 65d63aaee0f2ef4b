"""Patched runs: generate images from a pipeline with ToMe applied for the call only."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch

PROMPT = "a photograph of a face, studio light"


def generate(pipe: Any, ratio: float, *, steps: int, seed: int, images: int,
             **tome_kwargs: Any) -> np.ndarray:
    """Images [N, H, W, 3] float32 in [0, 1] from `pipe` with ToMe at `ratio`.

    ToMe is applied for this call and removed after it, even on error, so a cached
    pipeline is never left patched. Ratio 0 runs the pipeline unpatched. The same seed
    gives the same noise, so merged and unmerged images are comparable pixel by pixel.
    """
    if ratio == 0:
        return _call(pipe, steps=steps, seed=seed, images=images)
    from pytest_tome.patch import tome_applied

    with tome_applied(pipe, ratio, seed=seed, **tome_kwargs):
        return _call(pipe, steps=steps, seed=seed, images=images)


def _call(pipe: Any, *, steps: int, seed: int, images: int) -> np.ndarray:
    device = pipe.device
    # MPS has no seeded generator of its own; CPU noise moved to the device is the usual fix.
    generator = torch.Generator("cpu" if device.type == "mps" else device).manual_seed(seed)
    params = inspect.signature(pipe.__call__).parameters
    kwargs: dict[str, Any] = {"num_inference_steps": steps, "generator": generator,
                              "output_type": "np"}
    if "prompt" in params:
        kwargs.update(prompt=PROMPT, num_images_per_prompt=images)
    else:
        kwargs.update(batch_size=images)
    with torch.inference_mode():
        out = pipe(**kwargs).images
    return np.asarray(out, dtype=np.float32)
