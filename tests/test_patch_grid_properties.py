"""Properties of merging over patch grids (DiT, PixArt-α) and UNet levels, on random sizes.

Through the public API on one-block models: SDPA's self-attention sees exactly
N - floor(rN) of the N patch tokens, the text of cross-attention is never touched, the output
keeps its shape, and ratio 0 is the identity; the grid of a layer is recovered from its token
count as tomesd does.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from diffusers import DiTTransformer2DModel, PixArtTransformer2DModel
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_tome.engine import tome_applied
from pytest_tome.engine.families.transformer_blocks import InputGrid

TEXT = 5


def _tiny(cls: type, **extra: Any) -> Any:
    torch.manual_seed(0)
    model = cls(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        sample_size=8,
        patch_size=2,
        **extra,
    )
    return model.eval()


MODELS = {
    "dit": _tiny(DiTTransformer2DModel),
    "pixart": _tiny(PixArtTransformer2DModel, cross_attention_dim=16, caption_channels=12),
}


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    """A model, a grid of 2x2 patches (square for DiT), a batch, a ratio and a seed."""
    name = draw(st.sampled_from(sorted(MODELS)))
    h = draw(st.integers(1, 12))
    w = h if name == "dit" else draw(st.integers(1, 12))
    return {
        "name": name,
        "h": h,
        "w": w,
        "batch": draw(st.integers(1, 3)),
        "ratio": draw(st.sampled_from([0.0, 0.1, 0.25, 0.3, 0.5, 0.6, 0.75])),
        "seed": draw(st.integers(0, 2**16)),
    }


def _run(case: dict[str, Any], seen: list[tuple[int, int]]) -> torch.Tensor:
    model = MODELS[case["name"]]
    gen = torch.Generator().manual_seed(case["seed"])
    batch = case["batch"]
    kwargs: dict[str, Any] = {"timestep": torch.tensor([500] * batch)}
    if case["name"] == "dit":
        kwargs["class_labels"] = torch.zeros(batch, dtype=torch.int64)
    else:
        kwargs["encoder_hidden_states"] = torch.randn(batch, TEXT, 12, generator=gen)
        kwargs["added_cond_kwargs"] = {"resolution": None, "aspect_ratio": None}
    latent = torch.randn(batch, 4, 2 * case["h"], 2 * case["w"], generator=gen)
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def counting(query: torch.Tensor, key: torch.Tensor, *args: Any, **kw: Any) -> torch.Tensor:
        seen.append((query.shape[-2], key.shape[-2]))
        return sdpa(query, key, *args, **kw)

    with pytest.MonkeyPatch.context() as mp, torch.no_grad():
        mp.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
        return model(latent, **kwargs).sample


@settings(max_examples=40, deadline=None)
@given(cases())
def test_self_attention_sees_exactly_n_minus_floor_rn_tokens(case: dict[str, Any]) -> None:
    plain_seen: list[tuple[int, int]] = []
    plain = _run(case, plain_seen)
    seen: list[tuple[int, int]] = []
    with tome_applied(MODELS[case["name"]], case["ratio"], seed=case["seed"]) as patch:
        merged = _run(case, seen)
    n = case["h"] * case["w"]
    expected = n - math.floor(case["ratio"] * n) if case["h"] >= 2 and case["w"] >= 2 else n
    assert seen[0] == (expected, expected)  # the self-attention
    assert seen[1:] == plain_seen[1:]  # PixArt's cross-attention: every query, all text
    if case["name"] == "pixart":
        assert seen[1] == (n, TEXT)
    assert merged.shape == plain.shape
    layer = patch.layers[0]
    assert (layer.tokens_in, layer.tokens_out, layer.calls) == (n, expected, 1)
    assert layer.merged_calls == (expected < n)


@settings(max_examples=25, deadline=None)
@given(cases())
def test_ratio_zero_is_the_identity(case: dict[str, Any]) -> None:
    plain = _run(case, [])
    with tome_applied(MODELS[case["name"]], 0.0, seed=case["seed"]):
        assert torch.equal(_run(case, []), plain)


@given(
    height=st.integers(1, 16),
    width=st.integers(1, 16),
    patch=st.sampled_from([1, 2]),
    level=st.integers(0, 3),
)
def test_the_grid_of_a_level_comes_back_from_its_token_count(
    height: int, width: int, patch: int, level: int
) -> None:
    """A latent of (8h, 8w) patches downsampled 2**level times: tomesd's rule finds it."""
    grid = InputGrid(patch)
    latent = torch.empty(1, 4, 8 * height * patch, 8 * width * patch)
    grid.read(torch.nn.Identity(), (latent,), {})
    d = 2**level
    h, w = 8 * height // d, 8 * width // d
    assert grid.at(h * w) == (h, w, d)
    assert grid.at(h * w + 1) is None or math.prod(grid.at(h * w + 1)[:2]) == h * w + 1
