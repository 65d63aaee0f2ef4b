"""ToDo (token downsampling) and shared matchings: the downsampling, its ratios, one matching per
resolution. (Ratio 0, removal and ToDo's counts per family: tests/test_family_contracts.py.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_tome.engine import TomeArgs, apply_tome, remove_tome, tome_applied
from pytest_tome.engine.reducer import Reducer
from pytest_tome.engine.todo import downsample, downsampled_tokens, todo_factor
from pytest_tome.methods import realises, valid_todo_ratios
from pytest_tome.models.embedded import build_embedded

EMBEDDED = ("tiny-ddpm", "tiny-ldm", "tiny-sd")


@pytest.fixture(scope="module")
def pipes() -> dict:
    return {name: build_embedded(name) for name in EMBEDDED}


@pytest.fixture(params=EMBEDDED)
def unet(request: pytest.FixtureRequest, pipes: dict) -> Iterator[torch.nn.Module]:
    model = pipes[request.param].unet
    yield model
    remove_tome(model)


def inputs(unet: torch.nn.Module, batch: int = 2, size: int = 16) -> tuple:
    gen = torch.Generator().manual_seed(0)
    cfg = unet.config
    args = [torch.randn(batch, cfg.in_channels, size, size, generator=gen), torch.tensor([500])]
    if isinstance(unet, UNet2DConditionModel):
        args.append(torch.randn(batch, 7, cfg.cross_attention_dim, generator=gen))
    return tuple(args)


@torch.no_grad()
def run(unet: torch.nn.Module, args: tuple) -> torch.Tensor:
    return unet(*args).sample


# --- the downsampling itself -------------------------------------------------------------


@given(
    batch=st.integers(1, 3),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    channels=st.integers(1, 5),
    factor=st.sampled_from([1, 2, 3, 4]),
)
@settings(deadline=None, max_examples=60)
def test_downsample_is_nearest_exact_interpolation(
    batch: int, h: int, w: int, channels: int, factor: int
) -> None:
    x = torch.randn(batch, h * w, channels, generator=torch.Generator().manual_seed(h * w))
    out = downsample(x, h, w, factor)
    assert out.shape == (batch, downsampled_tokens(h, w, factor) if h >= factor and w >= factor
                         else h * w, channels)  # fmt: skip
    if factor > 1 and h >= factor and w >= factor:
        grid = x.reshape(batch, h, w, channels).permute(0, 3, 1, 2)
        expected = F.interpolate(grid, size=(h // factor, w // factor), mode="nearest-exact")
        assert torch.equal(out, expected.permute(0, 2, 3, 1).reshape(batch, -1, channels))
    else:
        assert out is x


@pytest.mark.parametrize(
    ("ratio", "factor"), [(0, 1), (0.75, 2), (8 / 9, 3), (0.889, 3), (0.9375, 4)]
)
def test_todo_ratios_map_to_factors(ratio: float, factor: int) -> None:
    assert todo_factor(ratio) == factor
    assert realises("todo", ratio)


@pytest.mark.parametrize("ratio", [0.5, 0.3, 0.8, 1.0, -0.75, float("nan"), True, "0.75"])
def test_other_todo_ratios_are_refused_naming_the_valid_ones(ratio: object) -> None:
    with pytest.raises(ValueError, match=r"ToDo ratio must be one of 0, 0\.75 \(2x2\)") as info:
        TomeArgs(ratio, method="todo")  # type: ignore[arg-type]
    assert repr(ratio) in str(info.value)
    assert not realises("todo", ratio) if isinstance(ratio, float) else True
    assert "0.9375 (4x4)" in valid_todo_ratios()


def test_unknown_method_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"method must be one of tome, todo, got 'tomo'"):
        TomeArgs(0.5, method="tomo")
    with pytest.raises(TypeError, match="share_matching must be True or False"):
        TomeArgs(0.5, share_matching=1)  # type: ignore[arg-type]


# --- ToDo through apply_tome -------------------------------------------------------------


def test_todo_is_deterministic_and_needs_no_seed(unet: torch.nn.Module) -> None:
    args = inputs(unet)
    with tome_applied(unet, 0.75, method="todo"):
        first = run(unet, args)
        assert torch.equal(run(unet, args), first)


# --- one matching per resolution per forward ---------------------------------------------


def test_shared_matching_is_made_once_per_resolution_per_forward(
    unet: torch.nn.Module,
) -> None:
    made: list[tuple[int, ...]] = []
    patch = apply_tome(unet, 0.5, seed=0, share_matching=True, backend="pytest-tome")
    match = patch.reducer.match

    def counting(metric: torch.Tensor, *a: object, **kw: object) -> object:
        made.append(tuple(metric.shape[:2]))
        return match(metric, *a, **kw)

    patch.reducer.match = counting
    args = inputs(unet)
    run(unet, args)
    merging = [layer for layer in patch.layers if layer.merged_calls]
    assert merging and len(made) == len(set(made)) < len(merging) + 1
    made.clear()
    run(unet, args)  # the next forward matches anew
    assert made and len(made) == len(set(made))
    remove_tome(unet)


def test_shared_matching_is_the_same_again_after_reseed(unet: torch.nn.Module) -> None:
    """(Ratio 0 and removal: tests/test_family_contracts.py.)"""
    args = inputs(unet)
    with tome_applied(unet, 0.5, seed=0, share_matching=True, backend="pytest-tome") as patch:
        shared = run(unet, args)
        patch.reseed()
        assert torch.equal(run(unet, args), shared)  # seeded: the same from the seed on


def test_a_shared_matching_equals_the_first_layers_own() -> None:
    """The first layer at a resolution computes the plan the others then reuse."""
    x = torch.randn(2, 64, 8, generator=torch.Generator().manual_seed(0))
    y = torch.randn(2, 64, 8, generator=torch.Generator().manual_seed(1))
    own = Reducer(TomeArgs(0.5, seed=3))
    shared = Reducer(TomeArgs(0.5, seed=3, share_matching=True))
    first = shared.plan(x, 8, 8)
    assert torch.equal(first.merge(x), own.plan(x, 8, 8).merge(x))
    assert shared.plan(y, 8, 8) is first
    shared.start_forward()
    assert shared.plan(y, 8, 8) is not first


# --- ToDo on the transformer backbones (DiT, PixArt-α) ------------------------------------
