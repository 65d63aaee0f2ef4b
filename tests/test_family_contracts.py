"""The contracts every merge family keeps, each one test parametrised over the embedded pipelines
(UNet2D: tiny-ddpm, tiny-ldm, tiny-sd; transformer blocks: tiny-dit, tiny-pixart; joint
attention: tiny-sd3, tiny-flux) and, where a family has them, over ToDo and shared matchings:
ratio 0 is bit-identical, removal gives back the very objects and bit-identical outputs,
merging counts every patched layer's tokens, and a pipeline's images change with the ratio."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import DiTTransformer2DModel, UNet2DConditionModel

from pytest_tome.engine import BACKEND_OURS, apply_tome, patch_of, remove_tome, tome_applied
from pytest_tome.engine.todo import downsampled_tokens
from pytest_tome.gate.measure.joint_inputs import joint_forward_inputs
from pytest_tome.gate.measure.pipeline_calls import generate, run_pipeline
from pytest_tome.models.embedded import build_embedded

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

UNETS = ("tiny-ddpm", "tiny-ldm", "tiny-sd")
TRANSFORMERS = ("tiny-dit", "tiny-pixart")
JOINT = ("tiny-sd3", "tiny-flux")
FAMILIES = (*UNETS, *TRANSFORMERS, *JOINT)
# The layers each pipeline's default patch covers (max_downsample=1).
UNET_LEVEL_0 = (
    "down_blocks.0.attentions.0",
    "up_blocks.1.attentions.0",
    "up_blocks.1.attentions.1",
)
LAYERS = {
    "tiny-ddpm": list(UNET_LEVEL_0),
    "tiny-ldm": list(UNET_LEVEL_0),
    "tiny-sd": [f"{block}.transformer_blocks.0" for block in UNET_LEVEL_0],
    "tiny-dit": ["transformer_blocks.0", "transformer_blocks.1"],
    "tiny-pixart": ["transformer_blocks.0", "transformer_blocks.1"],
    "tiny-sd3": ["transformer_blocks.0.attn", "transformer_blocks.1.attn"],
    "tiny-flux": [
        "transformer_blocks.0.attn",
        "single_transformer_blocks.0.attn",
        "single_transformer_blocks.1.attn",
    ],
}
# The ways of merging a family has besides plain ToMe (each with the ratio that merges).
VARIANTS = {
    "tome": ({}, 0.5),
    "todo": ({"method": "todo"}, 0.75),
    "shared": ({"share_matching": True, "backend": BACKEND_OURS}, 0.5),
}
CASES = [
    *[pytest.param(name, "tome", id=f"{name}-tome") for name in FAMILIES],
    *[pytest.param(name, "todo", id=f"{name}-todo") for name in (*UNETS, *TRANSFORMERS)],
    *[pytest.param(name, "shared", id=f"{name}-shared") for name in UNETS],
]
PIXART_TEXT = 120  # T5 tokens


@pytest.fixture(scope="module")
def pipes() -> dict[str, Any]:
    return {name: build_embedded(name) for name in FAMILIES}


@pytest.fixture()
def clean(pipes: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The pipelines, each left unpatched after the test whatever it did."""
    yield pipes
    for pipe in pipes.values():
        remove_tome(pipe)


def denoiser(pipe: Any) -> torch.nn.Module:
    return getattr(pipe, "unet", None) or pipe.transformer


def inputs(
    pipe: Any, model: torch.nn.Module | None = None, *, batch: int = 2, size: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict[str, Any]:  # fmt: skip
    """Seeded inputs for one forward: UNets at 16x16 latents (256 tokens at the first level)
    unless `size` says, DiT and PixArt at 64x64 (1024 patches), SD3 and Flux as their pipeline
    calls them (1024 image tokens)."""
    model = denoiser(pipe) if model is None else model
    gen = torch.Generator().manual_seed(0)
    if not hasattr(pipe, "unet") and (joint := joint_forward_inputs(pipe, gen)) is not None:
        return joint
    if hasattr(pipe, "unet"):
        cfg, side = model.config, size or 16
        kwargs = {
            "sample": torch.randn(batch, cfg.in_channels, side, side, generator=gen).to(dtype),
            "timestep": torch.tensor([500] * batch),
        }
        if isinstance(model, UNet2DConditionModel):
            context = torch.randn(batch, 7, cfg.cross_attention_dim, generator=gen)
            kwargs["encoder_hidden_states"] = context.to(dtype)
        return kwargs
    kwargs = {
        "hidden_states": torch.randn(batch, 4, 64, 64, generator=gen),
        "timestep": torch.tensor([500] * batch),
    }
    if isinstance(model, DiTTransformer2DModel):
        kwargs["class_labels"] = torch.tensor([207, 1000] * (batch // 2) + [0] * (batch % 2))
    else:
        kwargs["encoder_hidden_states"] = torch.randn(batch, PIXART_TEXT, 32, generator=gen)
        kwargs["added_cond_kwargs"] = {"resolution": None, "aspect_ratio": None}
    return kwargs


@torch.no_grad()
def run(model: torch.nn.Module, kwargs: dict[str, Any]) -> torch.Tensor:
    first, *rest = kwargs  # the first positionally, as a pipeline passes it
    return model(kwargs[first], **{k: kwargs[k] for k in rest}).sample


def processors(model: torch.nn.Module) -> dict[str, Any]:
    return {n: m.processor for n, m in model.named_modules() if hasattr(m, "set_processor")}


def image_tokens(pipe: Any, size: int | None = None) -> int:
    """Tokens at the first patched level for the inputs above."""
    if hasattr(pipe, "unet"):
        return (size or 16) ** 2
    return 1024


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_ratio_zero_is_bit_identical(clean: dict[str, Any], name: str, variant: str) -> None:
    pipe = clean[name]
    settings, _ = VARIANTS[variant]
    models = [denoiser(pipe)]
    # The UNets at an odd batch (fixed destinations) and an even one, and in bfloat16 too.
    batches = (1, 2) if name in UNETS and variant == "tome" else (2,)
    if name in UNETS and variant == "tome":
        models.append(copy.deepcopy(models[0]).to(torch.bfloat16))
    for model in models:
        for batch in batches:
            kwargs = inputs(pipe, model, batch=batch, dtype=next(model.parameters()).dtype)
            base = run(model, kwargs)
            with tome_applied(model, 0.0, seed=0, **settings) as patch:
                assert patch.layers, "ratio 0 still patches"
                assert torch.equal(run(model, kwargs), base), (model.dtype, batch)


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_remove_restores_bit_identical_output_and_objects(
    clean: dict[str, Any], name: str, variant: str
) -> None:
    settings, ratio = VARIANTS[variant]
    model = denoiser(clean[name])
    models = [model]
    if name in UNETS and variant == "tome":
        models.append(copy.deepcopy(model).to(torch.bfloat16))
    for model in models:
        kwargs = inputs(clean[name], model, dtype=next(model.parameters()).dtype)
        base = run(model, kwargs)
        before = processors(model)
        classes = {n: type(m) for n, m in model.named_modules()}
        patch = apply_tome(model, ratio, seed=0, **settings)
        assert not torch.equal(run(model, kwargs), base)
        assert remove_tome(model) is True
        assert torch.equal(run(model, kwargs), base)
        after = processors(model)
        assert after.keys() == before.keys()
        assert all(after[n] is before[n] for n in before), "the very processor objects come back"
        assert {n: type(m) for n, m in model.named_modules()} == classes
        assert not any(m._forward_pre_hooks for m in model.modules())
        assert not any(
            hasattr(m, "_tome_info") or hasattr(m, "_pytest_tome_patch") for m in model.modules()
        )
        assert patch.removed and remove_tome(model) is False


@pytest.mark.parametrize("ratio", [0.3, 0.5])
@pytest.mark.parametrize("name", FAMILIES)
def test_merging_changes_the_output_and_counts_every_layer(
    clean: dict[str, Any], name: str, ratio: float
) -> None:
    """At each pipeline's own size (the UNets: one sample at sample_size), every patched layer
    merges on its one call, from all image tokens to n - floor(ratio * n)."""
    pipe = clean[name]
    model = denoiser(pipe)
    size = model.config.sample_size if name in UNETS else None
    kwargs = inputs(pipe, batch=1 if name in UNETS else 2, size=size)
    base = run(model, kwargs)
    with tome_applied(pipe, ratio, seed=0) as patch:
        merged = run(model, kwargs)
    assert merged.shape == base.shape and torch.isfinite(merged).all()
    assert not torch.equal(merged, base)
    assert patch.backends == (BACKEND_OURS,)
    assert patch.names == LAYERS[name]
    assert patch.idle_layers() == []
    n = image_tokens(pipe, size)
    for layer in patch.layers:
        assert layer.calls == layer.merged_calls > 0, layer.name
        assert (layer.tokens_in, layer.tokens_out) == (n, n - math.floor(ratio * n)), layer.name


@pytest.mark.parametrize(("ratio", "factor"), [(0.75, 2), (0.9375, 4)])
@pytest.mark.parametrize("name", [*UNETS, *TRANSFORMERS])
def test_todo_keys_and_values_are_exactly_downsampled(
    clean: dict[str, Any], name: str, ratio: float, factor: int
) -> None:
    """Every merging layer saw all its tokens as queries and (h/k)(w/k) keys and values; on the
    transformers every layer merges, at the full grid."""
    pipe = clean[name]
    model, kwargs = denoiser(pipe), inputs(pipe)
    base = run(model, kwargs)
    with tome_applied(pipe, ratio, method="todo", seed=0) as patch:
        todo = run(model, kwargs)
        merged = [layer for layer in patch.layers if layer.merged_calls]
        assert merged, patch.describe()
        if name in TRANSFORMERS:
            assert merged == list(patch.layers)
            assert {layer.tokens_in for layer in merged} == {image_tokens(pipe)}
        for layer in merged:
            side = math.isqrt(layer.tokens_in)
            assert layer.tokens_out == downsampled_tokens(side, side, factor), patch.describe()
    assert not torch.equal(todo, base)


@pytest.mark.parametrize("name", FAMILIES)
def test_applying_again_replaces_the_patch(clean: dict[str, Any], name: str) -> None:
    pipe = clean[name]
    model, kwargs = denoiser(pipe), inputs(clean[name])
    before = processors(model)
    once = apply_tome(pipe, 0.5, seed=3)
    merged_once = run(model, kwargs)
    apply_tome(pipe, 0.3, seed=3)
    again = apply_tome(pipe, 0.5, seed=3)
    assert once.removed and not again.removed
    assert torch.equal(run(model, kwargs), merged_once)
    for layer in again.layers:  # never wraps its own processor
        attn = getattr(layer.module, "attn1", layer.module)
        assert type(attn.processor.original).__module__.startswith("diffusers."), layer.name
    remove_tome(pipe)
    assert processors(model) == before


@pytest.mark.parametrize("name", FAMILIES)
def test_a_pipeline_and_its_bare_denoiser_are_patched_alike(
    clean: dict[str, Any], name: str
) -> None:
    pipe = clean[name]
    with tome_applied(pipe, 0.5, seed=0) as by_pipe:
        assert by_pipe.model is denoiser(pipe)
        names = by_pipe.names
        assert {layer.downsample for layer in by_pipe.layers} == {1}
    with tome_applied(denoiser(pipe), 0.5, seed=0) as by_model:
        assert by_model.names == names == LAYERS[name]


@pytest.mark.parametrize("name", FAMILIES)
def test_pipeline_images_change_with_the_ratio_and_not_at_zero(
    clean: dict[str, Any], name: str
) -> None:
    pipe = clean[name]
    pipe.set_progress_bar_config(disable=True)
    before = processors(denoiser(pipe))
    base = generate(pipe, 0.0, steps=2, seed=0, images=1)  # unpatched
    with tome_applied(pipe, 0.0, seed=0):
        zero = run_pipeline(pipe, steps=2, seed=0, images=1)
    images = {r: generate(pipe, r, steps=2, seed=0, images=1) for r in (0.3, 0.5)}
    assert base.shape == (1, *base.shape[1:3], 3) and base.dtype == np.float32
    assert np.array_equal(zero, base)
    assert not np.array_equal(images[0.3], base) and not np.array_equal(images[0.5], base)
    assert not np.array_equal(images[0.3], images[0.5])
    assert patch_of(pipe) is None
    assert all(processors(denoiser(pipe))[n] is p for n, p in before.items()), "patch removed"
