"""float16 matching on the CPU: tokens whose squares (above 256) or norms (above 65504)
overflow float16 still match, with no inf or nan, as their float32 twins do."""

from __future__ import annotations

import pytest
import torch

from pytest_tome.engine.matching import bipartite_soft_matching_2d

H = W = 16
CHANNELS = 64


def tokens(scale: float, *, channels_first: bool) -> torch.Tensor:
    # Clear structure, so float16 rounding cannot flip which destination is best: each 2x2
    # cell's tokens share a direction, plus a little noise.
    gen = torch.Generator().manual_seed(0)
    cells = torch.randn(H // 2, W // 2, CHANNELS, generator=gen)
    grid = cells.repeat_interleave(2, 0).repeat_interleave(2, 1).reshape(1, H * W, CHANNELS)
    x = (grid + 0.05 * torch.randn(1, H * W, CHANNELS, generator=gen)) * scale
    return x.transpose(1, 2).contiguous() if channels_first else x


@pytest.mark.parametrize("channels_first", [False, True], ids=["rows", "channels-first"])
@pytest.mark.parametrize("scale", [1.0, 300.0, 10000.0])  # squares, then norms, overflow
def test_float16_matches_large_tokens_like_float32(scale: float, channels_first: bool) -> None:
    x32 = tokens(scale, channels_first=channels_first)
    x16 = x32.half()
    assert torch.isfinite(x16).all()
    r = H * W  # capped at the sources: each merges into its best destination
    half = bipartite_soft_matching_2d(
        x16, H, W, 2, 2, r, use_rand=False, channels_first=channels_first
    )
    full = bipartite_soft_matching_2d(
        x32, H, W, 2, 2, r, use_rand=False, channels_first=channels_first
    )
    # every source merges into its own cell's destination, in either precision
    assert torch.equal(half.inverse, full.inverse)
    if scale <= 300:  # a mean's sum of four 10000s overflows float16 itself, as in tomesd
        merge = half.merge_channels_first if channels_first else half.merge
        assert torch.isfinite(merge(x16)).all(), "inf or nan in the merged float16 tokens"
