"""SD3 and Flux through the public API: merging the image stream only, with the merged token
count at attention and RoPE rows that follow the tokens. (Ratio 0, removal and counts:
tests/test_family_contracts.py.)"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from diffusers import FluxPipeline, StableDiffusion3Pipeline  # noqa: F401 (imported once)

from pytest_tome.engine import (
    TomeNotApplicable,
    TomeWarning,
    apply_tome,
    remove_tome,
    tome_applied,
)
from pytest_tome.gate.measure.joint_inputs import joint_forward_inputs
from pytest_tome.models.embedded import build_embedded

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MODELS = ("tiny-sd3", "tiny-flux")
TEXT = {"tiny-sd3": 77 + 32, "tiny-flux": 32}  # CLIP + T5 tokens; Flux: T5 only
IMAGE = 1024  # 32 x 32 patches


@pytest.fixture(scope="module")
def pipes() -> dict[str, Any]:
    return {name: build_embedded(name) for name in MODELS}


@pytest.fixture(params=MODELS)
def pipe(request: pytest.FixtureRequest, pipes: dict[str, Any]) -> Iterator[Any]:
    yield pipes[request.param]
    remove_tome(pipes[request.param])


def forward(pipe: Any) -> torch.Tensor:
    kwargs = joint_forward_inputs(pipe, torch.Generator().manual_seed(0))
    with torch.no_grad():
        return pipe.transformer(**kwargs).sample


def name_of(pipe: Any) -> str:
    return "tiny-sd3" if isinstance(pipe, StableDiffusion3Pipeline) else "tiny-flux"


class SpyMixin:
    """A processor that records what the attention gets and passes it to the real one."""

    def __init__(self, original: Any) -> None:
        self.original = original
        self.calls: list[dict[str, Any]] = []

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        out = self.original(attn, hidden_states, encoder_hidden_states, attention_mask, *args)
        self.calls.append(
            {"hidden": hidden_states, "text": encoder_hidden_states, "args": args, "out": out}
        )
        return out


def spy_on(original: Any) -> Any:
    """A SpyMixin that is also an instance of the original processor's class."""
    return type("Spy", (SpyMixin, type(original)), {})(original)


@pytest.mark.parametrize("ratio", [0.3, 0.5])
def test_sdpa_sees_merged_image_tokens_plus_every_text_token(
    pipe: Any, ratio: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def counting(query: torch.Tensor, key: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        seen.append(key.shape[-2])
        return sdpa(query, key, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
    apply_tome(pipe, ratio, seed=0)
    forward(pipe)
    text = TEXT[name_of(pipe)]
    layers = sum(1 for _ in pipe.transformer.attn_processors)
    assert seen == [IMAGE - math.floor(IMAGE * ratio) + text] * layers


def test_text_tokens_reach_attention_untouched(pipe: Any) -> None:
    attn = pipe.transformer.transformer_blocks[0].attn
    spy = spy_on(attn.processor)
    attn.set_processor(spy)
    try:
        forward(pipe)
        with_tome = apply_tome(pipe, 0.5, seed=0)
        forward(pipe)
        with_tome.remove()
    finally:
        attn.set_processor(spy.original)
    plain, merged = spy.calls
    assert torch.equal(merged["text"], plain["text"])  # the first block: same text input
    assert merged["hidden"].shape[1] == IMAGE // 2 < plain["hidden"].shape[1]


def test_flux_rope_rows_follow_the_merged_tokens(pipes: dict[str, Any]) -> None:
    pipe = pipes["tiny-flux"]
    attn = pipe.transformer.single_transformer_blocks[0].attn
    spy = spy_on(attn.processor)
    attn.set_processor(spy)
    try:
        forward(pipe)
        with tome_applied(pipe, 0.5, seed=0):
            forward(pipe)
    finally:
        attn.set_processor(spy.original)
    (plain, merged), text = spy.calls, TEXT["tiny-flux"]
    for full, kept in zip(plain["args"][0], merged["args"][0], strict=True):  # cos, sin
        assert torch.equal(kept[:text], full[:text])
        assert kept.shape[0] == text + IMAGE // 2
        # every image row is the row of one original position, each position at most once
        match = (kept[text:, None, :] == full[None, text:, :]).all(-1)
        assert (match.sum(1) >= 1).all()
        assert len({int(row.nonzero()[0, 0]) for row in match}) == IMAGE // 2


def test_refusal_names_the_model_class_and_reason(pipe: Any) -> None:
    name = type(pipe.transformer).__name__
    with pytest.raises(TomeNotApplicable, match=f"{name}: merge_attn=False, and attention is all"):
        apply_tome(pipe, 0.5, merge_attn=False, merge_mlp=True)


def test_todo_is_refused_by_model_class(pipe: Any) -> None:
    with pytest.raises(TomeNotApplicable, match=f"ToDo .*{type(pipe.transformer).__name__}"):
        apply_tome(pipe, 0.75, method="todo")
    assert not any(isinstance(p, SpyMixin) for p in pipe.transformer.attn_processors.values())
    assert torch.equal(forward(pipe), forward(pipe))


def test_a_processor_replaced_after_apply_is_reported(pipe: Any) -> None:
    patch = apply_tome(pipe, 0.5, seed=0)
    victim = patch.layers[0]
    replacement = spy_on(victim.processor.original)
    victim.module.set_processor(replacement)
    assert victim.replaced and not patch.layers[1].replaced
    with pytest.warns(TomeWarning, match=victim.name):
        patch.remove()
    assert victim.module.processor is replacement  # left in place, not silently undone


def test_a_processor_it_cannot_wrap_is_refused_by_name(pipe: Any) -> None:
    from diffusers.models.attention_processor import AttnProcessor2_0

    attn = pipe.transformer.transformer_blocks[0].attn
    original = attn.processor
    attn.set_processor(AttnProcessor2_0())
    try:
        with pytest.raises(TomeNotApplicable, match="transformer_blocks.0.attn of .* uses Attn"):
            apply_tome(pipe, 0.5)
        assert attn.processor.__class__ is AttnProcessor2_0  # nothing left half-patched
    finally:
        attn.set_processor(original)


def test_positional_arguments_give_the_grid_too(pipe: Any) -> None:
    kwargs = joint_forward_inputs(pipe, torch.Generator().manual_seed(0))
    names = ["hidden_states", "encoder_hidden_states", "pooled_projections", "timestep"]
    args = [kwargs.pop(name) for name in names]
    with tome_applied(pipe, 0.5, seed=0) as patch, torch.no_grad():
        pipe.transformer(*args, **kwargs)
        assert patch.idle_layers() == []


def test_an_unknown_grid_falls_back_and_says_so(pipes: dict[str, Any]) -> None:
    pipe = pipes["tiny-flux"]
    kwargs = joint_forward_inputs(pipe, torch.Generator().manual_seed(0))
    kwargs["img_ids"] = torch.zeros_like(kwargs["img_ids"])  # no row-major grid to match on
    with tome_applied(pipe, 0.5, seed=0) as patch, torch.no_grad():
        pipe.transformer(**kwargs)
        assert all(layer.fallbacks["grid too small"] == layer.calls == 1 for layer in patch.layers)
        idle = patch.idle_layers()  # what the gate's run-time check reports
        assert len(idle) == len(patch.layers) and all("grid too small" in why for why in idle)


def test_sd35_dual_attention_merges_its_image_only_attn2(monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(0)
    model = SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=2,
        attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16,
        caption_projection_dim=16, pooled_projection_dim=8, pos_embed_max_size=16,
        dual_attention_layers=(0,), qk_norm="rms_norm",
    ).eval()  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    inputs = {
        "hidden_states": torch.randn(2, 4, 16, 16, generator=gen),
        "encoder_hidden_states": torch.randn(2, 5, 16, generator=gen),
        "pooled_projections": torch.randn(2, 8, generator=gen),
        "timestep": torch.tensor([500.0, 500.0]),
    }
    seen: list[int] = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def counting(query: torch.Tensor, key: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        seen.append(key.shape[-2])
        return sdpa(query, key, *args, **kwargs)

    with torch.no_grad():
        plain = model(**inputs).sample
        monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
        with tome_applied(model, 0.5, seed=0) as patch:
            merged = model(**inputs).sample
    assert "transformer_blocks.0.attn2" in patch.names
    assert sorted(seen) == sorted([32 + 5, 32, 32 + 5])  # 64 image tokens -> 32; attn2: no text
    assert not torch.equal(merged, plain)
