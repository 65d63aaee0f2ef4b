"""DiT and PixArt-α through the public API, and the pytest-tome backend for SD's UNet blocks:
merging the image tokens of self-attention only (grid counted in patches), never a silent
fallback, and tomesd's outputs on Stable Diffusion. (Ratio 0, removal and counts:
tests/test_family_contracts.py.)"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import tomesd
import torch
from diffusers import (  # the pipelines imported once, before pytester's runs
    DiTPipeline,  # noqa: F401
    DiTTransformer2DModel,
    PixArtAlphaPipeline,  # noqa: F401
    UNet2DConditionModel,
)
from diffusers.models.attention_processor import AttnProcessor2_0

from pytest_tome.engine import (
    BACKEND_OURS,
    BACKEND_TOMESD,
    TomeNotApplicable,
    TomeWarning,
    apply_tome,
    remove_tome,
    tome_applied,
)
from pytest_tome.engine.layers import REASON_GRID, REASON_MASK, REASON_REPLACED
from pytest_tome.models.embedded import build_embedded

MODELS = ("tiny-dit", "tiny-pixart")
TEXT = 120  # PixArt's T5 tokens


@pytest.fixture(scope="module")
def pipes() -> dict[str, Any]:
    return {name: build_embedded(name) for name in (*MODELS, "tiny-sd")}


@pytest.fixture(params=MODELS)
def model(request: pytest.FixtureRequest, pipes: dict[str, Any]) -> Iterator[Any]:
    transformer = pipes[request.param].transformer
    yield transformer
    remove_tome(transformer)


def inputs(model: Any, height: int = 64, width: int = 64, batch: int = 2) -> dict[str, Any]:
    """Seeded inputs as the pipeline gives them: a guidance batch, labels or T5 tokens."""
    gen = torch.Generator().manual_seed(0)
    kwargs: dict[str, Any] = {
        "hidden_states": torch.randn(batch, 4, height, width, generator=gen),
        "timestep": torch.tensor([500] * batch),
    }
    if isinstance(model, DiTTransformer2DModel):
        kwargs["class_labels"] = torch.tensor([207, 1000] * (batch // 2) + [0] * (batch % 2))
    else:
        kwargs["encoder_hidden_states"] = torch.randn(batch, TEXT, 32, generator=gen)
        kwargs["added_cond_kwargs"] = {"resolution": None, "aspect_ratio": None}
    return kwargs


@torch.no_grad()
def run(model: Any, kwargs: dict[str, Any]) -> torch.Tensor:
    hidden_states, *_ = kwargs.values()  # positional, as tomesd's size hook needs it
    return model(hidden_states, **{k: v for k, v in kwargs.items() if k != "hidden_states"}).sample


@pytest.mark.parametrize("ratio", [0.3, 0.5])
@pytest.mark.parametrize("size", [(64, 64), (48, 32)], ids=["32x32", "24x16"])
def test_attention_sees_the_merged_image_tokens_and_every_text_token(
    model: Any, ratio: float, size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The grid is counted in 2x2 patches, read from each forward's input."""
    if isinstance(model, DiTTransformer2DModel):
        size = (size[0], size[0])  # DiT unpatchifies square grids only
    kwargs = inputs(model, *size)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    seen: list[tuple[int, int]] = []

    def counting(query: torch.Tensor, key: torch.Tensor, *args: Any, **kw: Any) -> torch.Tensor:
        seen.append((query.shape[-2], key.shape[-2]))
        return sdpa(query, key, *args, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
    run(model, kwargs)
    unpatched = list(seen)
    seen.clear()
    with tome_applied(model, ratio, seed=0):
        run(model, kwargs)
    n = size[0] * size[1] // 4
    merged = n - math.floor(ratio * n)
    assert seen.count((merged, merged)) == 2, "each block's self-attention on merged tokens"
    assert [s for s in seen if s != (merged, merged)] == [s for s in unpatched if s != (n, n)]
    if "encoder_hidden_states" in kwargs:  # PixArt's cross-attention: all queries, all text
        assert seen.count((n, TEXT)) == 2


def test_calls_it_cannot_merge_are_recorded_with_the_reason(pipes: dict[str, Any]) -> None:
    pixart = pipes["tiny-pixart"].transformer
    attn1 = pixart.transformer_blocks[0].attn1
    before = attn1.processor
    kwargs = inputs(pixart)
    kwargs["attention_mask"] = torch.ones(2, 1024)
    base = run(pixart, kwargs)
    with tome_applied(pixart, 0.5) as patch:
        assert torch.equal(run(pixart, kwargs), base)
        assert patch.layers[0].fallbacks == {REASON_MASK: 1}
        run(pixart, inputs(pixart, 2, 2))  # one patch: no 2x2 cell to merge in
        assert patch.layers[0].fallbacks[REASON_GRID] == 1
        user_processor = AttnProcessor2_0()
        attn1.set_processor(user_processor)
        run(pixart, inputs(pixart))
        assert patch.layers[0].fallbacks[REASON_REPLACED] == 1
        assert patch.layers[1].merged_calls == 1
        with pytest.warns(
            TomeWarning, match=r"transformer_blocks\.0\.attn1 holds AttnProcessor2_0"
        ):
            patch.remove()
    assert attn1.processor is user_processor  # left in place
    attn1.set_processor(before)


def test_refusals_name_the_model_class_and_the_reason() -> None:
    torch.manual_seed(0)
    small = DiTTransformer2DModel(
        num_attention_heads=1, attention_head_dim=8, num_layers=1, sample_size=2, patch_size=2
    )
    with pytest.raises(TomeNotApplicable, match=r"DiTTransformer2DModel.*sample_size 2.*1 token"):
        apply_tome(small, 0.5)
    with pytest.raises(TomeNotApplicable, match="DiTTransformer2DModel.*all False"):
        apply_tome(small, 0.5, merge_attn=False)


def test_tomesd_is_a_silent_no_op_on_dit_and_ours_is_not(pipes: dict[str, Any]) -> None:
    dit = pipes["tiny-dit"].transformer
    kwargs = inputs(dit)
    base = run(dit, kwargs)
    tomesd.apply_patch(dit, ratio=0.5)
    try:
        assert torch.equal(run(dit, kwargs), base)  # it counts the grid in pixels
    finally:
        tomesd.remove_patch(dit)
    with tome_applied(dit, 0.5):
        assert not torch.equal(run(dit, kwargs), base)


# --- backend="pytest-tome" on Stable Diffusion: tomesd's outputs ----------------------------


def sd_shaped_unet() -> UNet2DConditionModel:
    """SD 1.x's layout in miniature: cross-attention at three levels, two blocks each."""
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(32, 64, 64, 64),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=32,
        attention_head_dim=2,
        norm_num_groups=8,
    ).eval()


@pytest.fixture(scope="module")
def sd_unets(pipes: dict[str, Any]) -> dict[str, UNet2DConditionModel]:
    return {"tiny-sd": pipes["tiny-sd"].unet, "sd-shaped": sd_shaped_unet()}


SD_CASES = [
    {"ratio": 0.5, "seed": 7},
    {"ratio": 0.5, "seed": 7, "batch": 1},  # odd batch: fixed destinations
    {"ratio": 0.3, "seed": 1, "max_downsample": 2},
    {"ratio": 0.4, "seed": 2, "merge_crossattn": True, "merge_mlp": True},
    {"ratio": 0.75, "seed": 3, "max_downsample": 8, "use_rand": False},
]


@pytest.mark.parametrize("unet_name", ["tiny-sd", "sd-shaped"])
@pytest.mark.parametrize("case", SD_CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_pytest_tome_backend_gives_tomesds_outputs(
    sd_unets: dict[str, UNet2DConditionModel], unet_name: str, case: dict
) -> None:
    unet = sd_unets[unet_name]
    case = dict(case)
    batch = case.pop("batch", 2)
    gen = torch.Generator().manual_seed(0)
    args = (
        torch.randn(batch, 4, 24, 24, generator=gen),  # not the sample size: read per forward
        torch.tensor([500] * batch),
        torch.randn(batch, 7, 32, generator=gen),
    )
    outputs, patches = {}, {}
    for backend in (BACKEND_TOMESD, BACKEND_OURS):
        with (
            tome_applied(unet, **case, backend=backend, share_matching=False) as patch,
            torch.no_grad(),
        ):
            outputs[backend] = unet(*args).sample
            patches[backend] = patch
    assert torch.equal(outputs[BACKEND_OURS], outputs[BACKEND_TOMESD])
    ours, theirs = patches[BACKEND_OURS], patches[BACKEND_TOMESD]
    assert ours.backends == (BACKEND_OURS,) and theirs.backends == (BACKEND_TOMESD,)
    assert ours.names == theirs.names  # the same blocks, each patched by one family
    assert ours.tokens() == theirs.tokens()
    with torch.no_grad():
        assert not torch.equal(unet(*args).sample, outputs[BACKEND_OURS])


def test_pytest_tome_backend_matches_tomesd_without_a_seed(sd_unets: dict) -> None:
    unet = sd_unets["tiny-sd"]
    gen = torch.Generator().manual_seed(0)
    args = (torch.randn(2, 4, 32, 32, generator=gen), 500, torch.randn(2, 7, 32, generator=gen))
    outputs = []
    for backend in (BACKEND_TOMESD, BACKEND_OURS):
        torch.manual_seed(123)  # unseeded: both fork the global RNG
        with tome_applied(unet, 0.5, backend=backend, share_matching=False), torch.no_grad():
            outputs.append(unet(*args).sample)
    assert torch.equal(*outputs)


def test_an_unknown_backend_is_a_clear_error(sd_unets: dict) -> None:
    with pytest.raises(ValueError, match="backend must be 'tomesd' or 'pytest-tome', got 'fast'"):
        apply_tome(sd_unets["tiny-sd"], 0.5, backend="fast")
