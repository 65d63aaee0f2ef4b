"""Merging that stops at run time is seen: per-layer reasons, replaced and unknown processors."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
import torch
from diffusers.models.attention_processor import (
    Attention,
    AttnProcessor,
    AttnProcessor2_0,
    SlicedAttnProcessor,
)

from pytest_tome.engine import (
    TomeArgs,
    TomeNotApplicable,
    TomeWarning,
    apply_tome,
    patch_of,
    remove_tome,
)
from pytest_tome.engine.families.unet2d import TomeAttnProcessor
from pytest_tome.engine.layers import (
    REASON_3D,
    REASON_CONTEXT,
    REASON_GRID,
    REASON_MASK,
    REASON_REPLACED,
    PatchedLayer,
)
from pytest_tome.models.embedded import build_embedded


@pytest.fixture(scope="module")
def ddpm() -> Iterator[torch.nn.Module]:
    unet = build_embedded("tiny-ddpm").unet
    yield unet


@pytest.fixture
def unet(ddpm: torch.nn.Module) -> Iterator[torch.nn.Module]:
    before = {n: m.get_processor() for n, m in ddpm.named_modules() if isinstance(m, Attention)}
    yield ddpm
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TomeWarning)
        remove_tome(ddpm)
    for name, module in ddpm.named_modules():
        if name in before:
            module.set_processor(before[name])


def forward(unet: torch.nn.Module, size: int = 16) -> None:
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(2, unet.config.in_channels, size, size, generator=gen)
    with torch.inference_mode():
        unet(sample, torch.tensor([500, 500]))


def set_all(unet: torch.nn.Module, processor: object) -> None:
    """What user code does to every attention (UNet2DModel has no set_attn_processor)."""
    for module in unet.modules():
        if isinstance(module, Attention):
            module.set_processor(processor)


def attention() -> Attention:
    torch.manual_seed(0)
    return Attention(
        query_dim=32, heads=4, dim_head=8, norm_num_groups=8, residual_connection=True,
        bias=True, _from_deprecated_attn_block=True, processor=AttnProcessor2_0(),
    ).eval()  # fmt: skip


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda attn, x: attn(x, attention_mask=torch.zeros(2, 1, 64, 64)), REASON_MASK),
        (lambda attn, x: attn(x, encoder_hidden_states=torch.randn(2, 5, 32)), REASON_CONTEXT),
        (lambda attn, x: attn(x.flatten(2).transpose(1, 2)), REASON_3D),
        (lambda attn, x: attn(x[..., :1, :]), REASON_GRID),
    ],
    ids=["mask", "context", "3-D input", "grid too small"],
)
def test_each_unmerged_call_is_counted_with_its_reason(call, reason) -> None:
    attn = attention()
    layer = PatchedLayer("mid.attn", attn, "pytest-tome", 1)
    attn.set_processor(TomeAttnProcessor(attn.get_processor(), TomeArgs(0.5, seed=0), layer=layer))
    x = torch.randn(2, 32, 8, 8)
    with torch.no_grad():
        call(attn, x)
    assert (layer.calls, layer.merged_calls, dict(layer.fallbacks)) == (1, 0, {reason: 1})
    idle = layer.idle()
    assert idle is not None and idle.startswith("mid.attn saw ") and reason in idle
    assert f"saw {layer.tokens_in} tokens and passed {layer.tokens_in} on" in idle

    with torch.no_grad():
        attn(x)  # one merged call is enough
    assert layer.merged_calls == 1 and layer.idle() is None


def test_every_layer_merges_on_a_plain_forward(unet) -> None:
    patch = apply_tome(unet, 0.5, seed=0)
    forward(unet)
    assert patch.idle_layers() == []
    patch.reset_counts()
    assert len(patch.idle_layers()) == len(patch.layers)  # counts start over: never called


def test_processors_replaced_after_apply_are_named_and_survive_remove(unet) -> None:
    patch = apply_tome(unet, 0.5, seed=0)
    set_all(unet, AttnProcessor2_0())
    mine = {layer.name: layer.module.get_processor() for layer in patch.layers}
    forward(unet)
    idle = patch.idle_layers()
    assert len(idle) == len(patch.layers) >= 2
    assert all(REASON_REPLACED in line and "AttnProcessor2_0" in line for line in idle)
    assert idle[0].startswith(patch.layers[0].name)

    with pytest.warns(TomeWarning, match="left in place") as caught:
        assert remove_tome(unet)
    assert len(caught) == len(patch.layers)
    assert all(layer.module.get_processor() is mine[layer.name] for layer in patch.layers)
    assert patch_of(unet) is None


def test_one_replaced_layer_is_found_among_merging_ones(unet) -> None:
    patch = apply_tome(unet, 0.5, seed=0)
    victim = patch.layers[-1]
    victim.module.set_processor(AttnProcessor())
    forward(unet)
    assert patch.idle_layers() == [
        f"{victim.name} passed every token on ({REASON_REPLACED}: now AttnProcessor)"
    ]


def test_an_unknown_original_processor_is_refused_by_name_and_nothing_changes(unet) -> None:
    set_all(unet, SlicedAttnProcessor(slice_size=1))
    before = {n: m.get_processor() for n, m in unet.named_modules() if isinstance(m, Attention)}
    with pytest.raises(TomeNotApplicable, match="uses SlicedAttnProcessor.*AttnProcessor2_0"):
        apply_tome(unet, 0.5, seed=0)
    after = {n: m.get_processor() for n, m in unet.named_modules() if isinstance(m, Attention)}
    assert after == before and patch_of(unet) is None


def test_known_processors_are_wrapped_and_restored_exactly(unet) -> None:
    set_all(unet, AttnProcessor())
    before = {n: m.get_processor() for n, m in unet.named_modules() if isinstance(m, Attention)}
    patch = apply_tome(unet, 0.5, seed=0)
    assert all(
        isinstance(layer.module.get_processor(), TomeAttnProcessor) for layer in patch.layers
    )
    forward(unet)
    assert patch.idle_layers() == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an untouched patch removes without a word
        patch.remove()
    after = {n: m.get_processor() for n, m in unet.named_modules() if isinstance(m, Attention)}
    assert all(after[n] is p for n, p in before.items())


def test_an_error_inside_a_merged_call_is_raised_not_hidden_by_the_check() -> None:
    from pytest_tome.gate.measure.merged_calls import MergedCalls

    calls = MergedCalls(build_embedded("tiny-ddpm"), 0.5, seed=0)
    with pytest.raises(KeyError, match="user error"), calls():
        # The layers were never called: the error, not a no-op report, must surface.
        raise KeyError("user error")
