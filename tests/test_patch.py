"""apply_tome / remove_tome: exact when it should be, merging when it should, never a silent no-op."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator

import pytest
import tomesd
import torch
from diffusers import UNet2DConditionModel, UNet2DModel
from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

from pytest_tome.engine import (
    BACKEND_OURS,
    BACKEND_TOMESD,
    TomeArgs,
    TomeNotApplicable,
    apply_tome,
    max_ratio,
    remove_tome,
    tome_applied,
)
from pytest_tome.engine.families.unet2d import TomeAttnProcessor
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


def inputs(unet: torch.nn.Module, batch: int = 2, size: int = 16, dtype=torch.float32) -> dict:
    """Seeded UNet inputs; 16x16 keeps the first attention level at 256 tokens, and fast."""
    gen = torch.Generator().manual_seed(0)
    cfg = unet.config
    kwargs = {
        "sample": torch.randn(batch, cfg.in_channels, size, size, generator=gen).to(dtype),
        "timestep": torch.tensor([500] * batch),
    }
    if isinstance(unet, UNet2DConditionModel):
        context = torch.randn(batch, 7, cfg.cross_attention_dim, generator=gen)
        kwargs["encoder_hidden_states"] = context.to(dtype)
    return kwargs


@torch.no_grad()
def run(unet: torch.nn.Module, kwargs: dict) -> torch.Tensor:
    sample, timestep, *context = kwargs.values()
    return unet(sample, timestep, *context).sample


def processors(unet: torch.nn.Module) -> dict:
    return {n: m.get_processor() for n, m in unet.named_modules() if isinstance(m, Attention)}


# --- exactness ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("batch", [1, 2, 3, 4])
def test_ratio_zero_is_bit_identical(unet: torch.nn.Module, batch: int, dtype: torch.dtype) -> None:
    model = unet if dtype == torch.float32 else copy.deepcopy(unet).to(dtype)
    kwargs = inputs(model, batch=batch, dtype=dtype)
    base = run(model, kwargs)
    with tome_applied(model, 0.0, seed=0) as patch:
        assert patch.layers, "ratio 0 still patches"
        assert torch.equal(run(model, kwargs), base)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_remove_restores_bit_identical_output_and_objects(
    unet: torch.nn.Module, dtype: torch.dtype
) -> None:
    model = unet if dtype == torch.float32 else copy.deepcopy(unet).to(dtype)
    kwargs = inputs(model, dtype=dtype)
    base = run(model, kwargs)
    before = processors(model)
    classes = {n: type(m) for n, m in model.named_modules()}
    patch = apply_tome(model, 0.5, seed=0)
    assert not torch.equal(run(model, kwargs), base)
    assert remove_tome(model) is True
    assert torch.equal(run(model, kwargs), base)
    after = processors(model)
    assert after.keys() == before.keys()
    assert all(after[n] is before[n] for n in before), "the very same processor objects come back"
    assert {n: type(m) for n, m in model.named_modules()} == classes
    assert not any(m._forward_pre_hooks for m in model.modules())
    assert not any(
        hasattr(m, "_tome_info") or hasattr(m, "_pytest_tome_patch") for m in model.modules()
    )
    assert patch.removed and remove_tome(model) is False


def test_applying_twice_equals_applying_once(unet: torch.nn.Module) -> None:
    kwargs = inputs(unet)
    once = apply_tome(unet, 0.5, seed=3)
    merged_once = run(unet, kwargs)
    twice = apply_tome(unet, 0.5, seed=3)
    assert once.removed and not twice.removed
    assert torch.equal(run(unet, kwargs), merged_once)
    for layer in twice.layers:
        if layer.backend == BACKEND_OURS:
            attn = getattr(layer.module, "attn1", layer.module)  # a block's, or the Attention
            original = attn.get_processor().original
            assert isinstance(original, AttnProcessor2_0), "never wraps its own processor"


@pytest.mark.parametrize("ratio", [0.3, 0.5])
def test_merging_changes_the_output_at_full_size(unet: torch.nn.Module, ratio: float) -> None:
    kwargs = inputs(unet, batch=1, size=unet.config.sample_size)
    base = run(unet, kwargs)
    with tome_applied(unet, ratio, seed=0) as patch:
        merged = run(unet, kwargs)
    assert merged.shape == base.shape and torch.isfinite(merged).all()
    assert not torch.equal(merged, base)
    n = unet.config.sample_size**2
    assert set(patch.tokens().values()) == {(n, n - math.floor(ratio * n))}


@pytest.mark.parametrize("name", EMBEDDED)
def test_pipelines_change_with_ratio_and_not_at_zero(pipes: dict, name: str) -> None:
    pipe = pipes[name]
    pipe.set_progress_bar_config(disable=True)
    kwargs = {"num_inference_steps": 2, "output_type": "np"}
    if name == "tiny-sd":
        kwargs.update(prompt="a face", guidance_scale=7.5)

    def image() -> torch.Tensor:
        return torch.from_numpy(pipe(generator=torch.Generator().manual_seed(0), **kwargs).images)

    base = image()
    try:
        images = {}
        for ratio in (0.0, 0.3, 0.5):
            apply_tome(pipe, ratio, seed=0)
            images[ratio] = image()
    finally:
        remove_tome(pipe)
    assert torch.equal(images[0.0], base)
    assert not torch.equal(images[0.3], base) and not torch.equal(images[0.5], base)
    assert not torch.equal(images[0.3], images[0.5])


@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.7])  # 0.75 would leave 256, as at 16x16
def test_attention_sees_fewer_tokens(
    unet: torch.nn.Module, ratio: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    kwargs = inputs(unet, size=32)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    seen: list[int] = []

    def counting(query: torch.Tensor, *args, **kw) -> torch.Tensor:
        seen.append(query.shape[-2])
        return sdpa(query, *args, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
    run(unet, kwargs)
    unpatched = list(seen)
    seen.clear()
    with tome_applied(unet, ratio, seed=0) as patch:
        run(unet, kwargs)
    n = 32 * 32
    merged = n - math.floor(ratio * n)
    assert len(patch.layers) > 0
    assert seen.count(merged) == len(patch.layers), "one merged self-attention per patched layer"
    assert seen.count(n) == unpatched.count(n) - len(patch.layers)
    assert sorted(t for t in seen if t not in (n, merged)) == sorted(t for t in unpatched if t != n)


# --- the processor computes what diffusers computes ----------------------------------------


def _upsampled(batch: int, channels: int, size: int, seed: int) -> torch.Tensor:
    """Tokens equal within each 2x2 cell, so merging 3 of 4 loses nothing."""
    small = torch.randn(
        batch, channels, size // 2, size // 2, generator=torch.Generator().manual_seed(seed)
    )
    return torch.nn.functional.interpolate(small, scale_factor=2, mode="nearest")


def _unet2d_attention(original: type, *, spatial_norm: bool = False) -> Attention:
    """A UNet2D-style self-attention (group norm, residual, rescale) with seeded weights."""
    torch.manual_seed(0)
    return Attention(
        query_dim=32,
        heads=4,
        dim_head=8,
        norm_num_groups=None if spatial_norm else 8,
        spatial_norm_dim=4 if spatial_norm else None,
        residual_connection=True,
        rescale_output_factor=2.0,
        upcast_softmax=True,
        bias=True,
        _from_deprecated_attn_block=True,
        processor=original(),
    ).eval()


# The processor merges a channels-first map where it lies and a channels-last one as rows.
LAYOUTS = {"channels-first": torch.contiguous_format, "channels-last": torch.channels_last}


@pytest.mark.parametrize("original", [AttnProcessor2_0, AttnProcessor])
@pytest.mark.parametrize("use_rand", [False, True])
@pytest.mark.parametrize("spatial_norm", [False, True])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_lossless_merge_matches_diffusers_attention(
    original, use_rand: bool, spatial_norm: bool, layout: str
) -> None:
    attn = _unet2d_attention(original, spatial_norm=spatial_norm)
    x = _upsampled(2, 32, 16, seed=1).contiguous(memory_format=LAYOUTS[layout])
    temb = torch.randn(2, 4, 8, 8) if spatial_norm else None  # nearest-upsampled to 16x16 inside
    with torch.no_grad():
        expected = attn(x, temb=temb) if spatial_norm else attn(x)
        settings = TomeArgs(0.75, use_rand=use_rand, seed=0)
        attn.set_processor(TomeAttnProcessor(attn.get_processor(), settings))
        got = attn(x, temb=temb) if spatial_norm else attn(x)
    assert not torch.equal(got, x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("use_rand", [False, True])
def test_both_layouts_merge_the_same_tokens(use_rand: bool) -> None:
    """Lossy merging of random tokens: the channels-last (rows) and channels-first paths
    pick the same merges, so their outputs differ only by float rounding."""
    attn = _unet2d_attention(AttnProcessor2_0)
    original = attn.get_processor()
    x = torch.randn(2, 32, 16, 16, generator=torch.Generator().manual_seed(1))
    got = {}
    with torch.no_grad():
        unmerged = attn(x)
        for name, fmt in LAYOUTS.items():  # a fresh processor each: the same destinations
            settings = TomeArgs(0.5, seed=0, use_rand=use_rand)
            attn.set_processor(TomeAttnProcessor(original, settings))
            got[name] = attn(x.contiguous(memory_format=fmt))
    assert (got["channels-first"] - unmerged).abs().max() > 1e-3  # merging lost something
    torch.testing.assert_close(got["channels-last"], got["channels-first"], rtol=1e-5, atol=1e-5)


# --- Stable Diffusion goes through tomesd ------------------------------------------------


@pytest.fixture()
def sd_unet(pipes: dict) -> Iterator[torch.nn.Module]:
    model = pipes["tiny-sd"].unet
    yield model
    remove_tome(model)
    tomesd.remove_patch(model)


def test_same_output_as_tomesd_without_seed(sd_unet: torch.nn.Module) -> None:
    kwargs = inputs(sd_unet, size=32)
    tomesd.apply_patch(sd_unet, ratio=0.5)
    torch.manual_seed(123)
    theirs = run(sd_unet, kwargs)
    tomesd.remove_patch(sd_unet)
    patch = apply_tome(sd_unet, 0.5, share_matching=False)  # the default backend, own matchings
    torch.manual_seed(123)
    assert torch.equal(run(sd_unet, kwargs), theirs)
    assert patch.backends == (BACKEND_OURS,)


def test_same_output_as_tomesd_with_a_seeded_generator(sd_unet: torch.nn.Module) -> None:
    kwargs = inputs(sd_unet, size=32)
    tomesd.apply_patch(sd_unet, ratio=0.4, sx=2, sy=2, merge_mlp=True)
    sd_unet._tome_info["args"]["generator"] = torch.Generator().manual_seed(7)
    theirs = run(sd_unet, kwargs)
    tomesd.remove_patch(sd_unet)
    apply_tome(sd_unet, 0.4, merge_mlp=True, seed=7, share_matching=False)
    torch.manual_seed(999)  # the global RNG must not matter
    assert torch.equal(run(sd_unet, kwargs), theirs)


def test_seed_makes_merges_reproducible_regardless_of_global_rng(unet: torch.nn.Module) -> None:
    kwargs = inputs(unet)  # batch 2: random destinations

    def merged(seed: int, global_seed: int) -> torch.Tensor:
        with tome_applied(unet, 0.5, seed=seed):
            torch.manual_seed(global_seed)
            return run(unet, kwargs)

    assert torch.equal(merged(1, 10), merged(1, 20))
    assert not torch.equal(merged(1, 10), merged(2, 10))


def test_reseed_restarts_the_destinations(unet: torch.nn.Module) -> None:
    kwargs = inputs(unet)
    with tome_applied(unet, 0.5, seed=5) as patch:
        first, second = run(unet, kwargs), run(unet, kwargs)
        patch.reseed()
        again = run(unet, kwargs)
    assert not torch.equal(first, second), "the generator advances between forwards, as in tomesd"
    assert torch.equal(again, first)


def test_patch_reports_layers_backends_and_tokens(pipes: dict) -> None:
    ddpm = pipes["tiny-ddpm"]
    with tome_applied(ddpm, 0.5) as patch:
        assert patch.tokens() == dict.fromkeys(patch.names, (None, None))
        run(ddpm.unet, inputs(ddpm.unet, size=32))
        assert patch.names == [
            "down_blocks.0.attentions.0",
            "up_blocks.1.attentions.0",
            "up_blocks.1.attentions.1",
        ]
        assert patch.backends == (BACKEND_OURS,)
        assert all(isinstance(m, Attention) for m in patch.modules)
        assert set(patch.tokens().values()) == {(1024, 512)}
        assert "1024 -> 512 tokens" in patch.describe()
    sd = pipes["tiny-sd"].unet
    with tome_applied(sd, 0.5, max_downsample=2) as patch:
        assert patch.names[0] == "down_blocks.0.attentions.0.transformer_blocks.0"
        assert all(type(m).__name__ == "BasicTransformerBlock" for m in patch.modules)
    with tome_applied(sd, 0.5, max_downsample=2, backend=BACKEND_TOMESD) as patch:
        assert all(type(m).__name__ == "ToMeBlock" for m in patch.modules)


def test_default_merges_the_finest_attention_level_and_integers_count_from_the_input() -> None:
    # Attention at /2, /4 and /8 of the input: the default (None) patches the /2 layers.
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=16,
        block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
        attention_head_dim=4,
    )
    patch = apply_tome(unet, 0.5)
    assert patch.names == [
        "down_blocks.1.attentions.0",
        "up_blocks.2.attentions.0",
        "up_blocks.2.attentions.1",
    ]
    assert {layer.downsample for layer in patch.layers} == {2}
    assert patch.args.max_downsample == 2  # the level the default resolved to
    assert "[pytest-tome, /2]" in patch.describe()
    assert {layer.downsample for layer in apply_tome(unet, 0.5, max_downsample=4).layers} == {2, 4}
    everything = apply_tome(unet, 0.5, max_downsample=8)
    assert len(everything.layers) == len([m for m in unet.modules() if isinstance(m, Attention)])
    assert {layer.downsample for layer in everything.layers} == {2, 4, 8}
    # tomesd's meaning of an integer: max_downsample=1 reaches no attention layer here.
    with pytest.raises(
        TomeNotApplicable,
        match=r"UNet2DModel: all its attention layers are beyond max_downsample=1 .*first "
        r"attention is at /2 .*attention at /2, /4, /8\); pass max_downsample=2",
    ):
        apply_tome(unet, 0.5, max_downsample=1)
    remove_tome(unet)


# --- never a silent no-op; clear errors --------------------------------------------------


def _plain_unet(**overrides) -> UNet2DModel:
    config = {
        "sample_size": 16,
        "block_out_channels": (8, 16),
        "down_block_types": ("DownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "UpBlock2D"),
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "add_attention": False,
    }
    return UNet2DModel(**{**config, **overrides})


def test_tomesd_alone_is_a_silent_no_op_here_but_apply_tome_is_not(pipes: dict) -> None:
    ddpm = pipes["tiny-ddpm"].unet
    tomesd.apply_patch(ddpm, ratio=0.5)
    try:
        assert all(isinstance(p, AttnProcessor2_0) for p in processors(ddpm).values())
    finally:
        tomesd.remove_patch(ddpm)
    with tome_applied(ddpm, 0.5) as patch:
        assert len(patch.layers) == 3


def test_no_attention_layers_raise() -> None:
    with pytest.raises(TomeNotApplicable, match=r"UNet2DModel: it has no attention layers"):
        apply_tome(_plain_unet(), 0.5)
    assert apply_tome(_plain_unet(), 0.0).layers == ()  # nothing to merge is fine at ratio 0


def test_too_few_tokens_raise() -> None:
    unet = _plain_unet(sample_size=8, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"))  # fmt: skip
    with pytest.raises(TomeNotApplicable, match=r"UNet2DModel.*at most 16 tokens.*ratio >= 0.0625"):
        apply_tome(unet, 0.05)
    assert len(apply_tome(unet, 0.1).layers) == 3


def test_all_layers_beyond_max_downsample_raise() -> None:
    unet = UNet2DConditionModel(
        sample_size=16,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
        cross_attention_dim=8,
        attention_head_dim=2,
    )
    for backend in (BACKEND_OURS, BACKEND_TOMESD):
        with pytest.raises(
            TomeNotApplicable,
            match=r"UNet2DConditionModel: .*beyond max_downsample=1 \(tomesd's default.*"
            r"pass max_downsample=2 or leave max_downsample=None",
        ):
            apply_tome(unet, 0.5, max_downsample=1, backend=backend)
        with tome_applied(unet, 0.5, max_downsample=2, backend=backend) as patch:
            assert {layer.downsample for layer in patch.layers} == {2}
        with tome_applied(unet, 0.5, backend=backend) as patch:  # the default reaches /2
            assert {layer.downsample for layer in patch.layers} == {2}


def test_nothing_to_merge_when_merge_attn_is_off(pipes: dict) -> None:
    with pytest.raises(TomeNotApplicable, match=r"UNet2DModel: merge_attn=False"):
        apply_tome(pipes["tiny-ldm"], 0.5, merge_attn=False)


@pytest.mark.parametrize(
    ("ratio", "kwargs", "message"),
    [
        pytest.param(0.8, {}, r"between 0 and 0.75 for sx=2, sy=2", id="above-limit"),
        pytest.param(0.5, {"sx": 1, "sy": 1}, r"between 0 and 0 for sx=1, sy=1", id="stride-1"),
        pytest.param(-0.1, {}, r"between 0 and 0.75.*got -0.1", id="negative"),
        pytest.param("0.5", {}, r"ratio must be a number.*got '0.5'", id="string"),
        pytest.param(True, {}, r"ratio must be a number", id="bool"),
        pytest.param(math.nan, {}, r"ratio must be a number", id="nan"),
        pytest.param(0.5, {"sx": 0}, r"sx must be an integer >= 1, got 0", id="sx-0"),
        pytest.param(0.5, {"sy": 2.0}, r"sy must be an integer >= 1, got 2.0", id="sy-float"),
        pytest.param(
            0.5, {"max_downsample": 0}, r"max_downsample must be an integer >= 1", id="md-0"
        ),
        pytest.param(0.5, {"seed": -1}, r"seed must be an integer >= 0", id="seed-negative"),
    ],
)
def test_bad_arguments_are_clear_errors(pipes: dict, ratio, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        apply_tome(pipes["tiny-ldm"], ratio, **kwargs)
    assert remove_tome(pipes["tiny-ldm"]) is False, "a rejected call patches nothing"


def test_larger_strides_allow_larger_ratios(pipes: dict) -> None:
    assert (
        max_ratio(2, 2) == 0.75 and max_ratio(3, 3) == pytest.approx(8 / 9) and max_ratio(1, 1) == 0
    )
    with tome_applied(pipes["tiny-ldm"], 0.85, sx=3, sy=3, seed=0) as patch:
        assert patch.settings.ratio == 0.85


def test_wrong_types_are_type_errors(pipes: dict) -> None:
    with pytest.raises(
        TypeError, match=r"pipeline with a `.unet` or `.transformer`, or a torch.nn.Module.*got str"
    ):
        apply_tome("google/ddpm-celebahq-256", 0.5)
    with pytest.raises(TypeError, match=r"use_rand must be True or False, got 'yes'"):
        apply_tome(pipes["tiny-ldm"], 0.5, use_rand="yes")


def test_context_manager_removes_the_patch_on_error(pipes: dict) -> None:
    unet = pipes["tiny-ldm"].unet
    before = processors(unet)
    with pytest.raises(RuntimeError, match="boom"), tome_applied(unet, 0.5):
        assert any(isinstance(p, TomeAttnProcessor) for p in processors(unet).values())
        raise RuntimeError("boom")
    assert all(processors(unet)[n] is p for n, p in before.items())
