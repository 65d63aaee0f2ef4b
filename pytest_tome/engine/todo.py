"""Token downsampling (ToDo, Smith et al. 2024, arXiv:2402.13573): fewer keys and values.

ToDo keeps every query of a self-attention and downsamples only its keys and values, by
nearest-neighbour on the token grid, so nothing has to be unmerged. Its ratio is the share of
key/value tokens removed: a k x k downsampling keeps 1/k^2 of them, so the ratios ToDo can
realise are 0 (nothing removed) and 1 - 1/k^2 for k in `TODO_FACTORS`: 0.75 (2x2),
0.889 (3x3) and 0.9375 (4x4). Sampling is `F.interpolate(mode="nearest-exact")`, as in the
authors' code; on grids that k divides that is one strided view.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pytest_tome.methods import TODO_FACTORS, todo_factor, todo_ratio, valid_todo_ratios

__all__ = [
    "TODO_FACTORS",
    "downsample",
    "downsampled_tokens",
    "todo_factor",
    "todo_ratio",
    "valid_todo_ratios",
]


def downsampled_tokens(h: int, w: int, factor: int) -> int:
    """How many key/value tokens a factor x factor downsampling leaves of an h x w grid."""
    return (h // factor) * (w // factor) if factor > 1 else h * w


def downsample(x: torch.Tensor, h: int, w: int, factor: int) -> torch.Tensor:
    """Nearest-exact downsampling of (B, h*w, C) tokens to (B, (h//k)*(w//k), C).

    factor 1, or a grid smaller than factor x factor, returns `x` itself (nothing removed).
    """
    batch, tokens, channels = x.shape
    if tokens != h * w:
        raise ValueError(f"x has {tokens} tokens, but the grid h={h} x w={w} has {h * w}")
    if factor <= 1 or h < factor or w < factor:
        return x
    new_h, new_w = h // factor, w // factor
    grid = x.reshape(batch, h, w, channels)
    if h % factor == 0 and w % factor == 0:  # nearest-exact picks k//2 in every cell
        start = factor // 2
        picked = grid[:, start::factor, start::factor]
    else:
        picked = F.interpolate(
            grid.permute(0, 3, 1, 2), size=(new_h, new_w), mode="nearest-exact"
        ).permute(0, 2, 3, 1)
    return picked.reshape(batch, new_h * new_w, channels)
