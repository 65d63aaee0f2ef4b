"""Benchmark: what merging costs in the LDM CelebA-HQ UNet's 32x32 attention layers at r=0.5.

Side by side in one run, interleaved round by round (random weights, 1x3x64x64 latent):
the time inside the layers ToMe patches (1024 tokens, 448 channels) unpatched, merged with
our matching, merged with tomesd's `bipartite_soft_matching_random2d` in the same
processor, and the ideal (the layer on the first N/2 tokens, merging for free); and the
whole UNet forward unpatched and with ours. Only ratios within the run are asserted.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from tomesd.merge import bipartite_soft_matching_random2d

from pytest_tome.engine import TomeArgs, apply_tome, remove_tome
from pytest_tome.engine.families.unet2d import TomeAttnProcessor
from pytest_tome.engine.matching import bipartite_soft_matching_2d
from pytest_tome.models.presets import preset_unet

pytestmark = pytest.mark.slow

RATIO = 0.5
ROUNDS = 5
LAYER_REPEATS = 3  # layer timings per variant per round; forwards are timed once per round
LAYER_VARIANTS = ("unpatched", "ours", "tomesd", "ideal")


def tomesd_match(metric: torch.Tensor, h: int, w: int, sx: int, sy: int, r: int, **kw: Any) -> Any:
    """tomesd's matching behind our processor's matcher interface."""
    merge, unmerge = bipartite_soft_matching_random2d(
        metric, w, h, sx, sy, r, no_rand=not kw["use_rand"], generator=kw["generator"]
    )
    return SimpleNamespace(merge=merge, unmerge=unmerge, tokens_out=metric.shape[1] - r)


def seconds(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@pytest.fixture(scope="module")
def ldm_unet() -> torch.nn.Module:
    return preset_unet("arch:ldm-celebahq-256").eval()


@torch.no_grad()
def test_merge_cost_in_ldm_celebahq_attention(benchmark: Any, ldm_unet: torch.nn.Module) -> None:
    unet = ldm_unet
    sample = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    timestep = torch.tensor([500])
    layers = apply_tome(unet, RATIO, seed=0).modules  # the layers ToMe merges in
    remove_tome(unet)

    captured: dict[torch.nn.Module, tuple] = {}

    def capture(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        captured[module] = (args, kwargs)

    hooks = [m.register_forward_pre_hook(capture, with_kwargs=True) for m in layers]
    unet(sample, timestep)
    for hook in hooks:
        hook.remove()
    assert all(captured[m][0][0].shape[-2:] == (32, 32) for m in layers)

    originals = [m.get_processor() for m in layers]
    settings = TomeArgs(RATIO, seed=0)
    matchers = {"ours": bipartite_soft_matching_2d, "tomesd": tomesd_match}
    processors = {
        "unpatched": originals,
        "ideal": originals,
        **{
            name: [TomeAttnProcessor(p, settings, match=match) for p in originals]
            for name, match in matchers.items()
        },
    }
    halves = {m: captured[m][0][0][:, :, :16, :].contiguous() for m in layers}  # 512 tokens

    def run_layers(variant: str) -> None:
        for module in layers:
            args, kwargs = captured[module]
            if variant == "ideal":
                args = (halves[module], *args[1:])
            module(*args, **kwargs)

    def time_layers(variant: str) -> float:
        for module, processor in zip(layers, processors[variant]):
            module.set_processor(processor)
        try:
            return seconds(lambda: run_layers(variant))
        finally:
            for module, processor in zip(layers, originals):
                module.set_processor(processor)

    def time_forward(merged: bool) -> float:
        if merged:
            apply_tome(unet, RATIO, seed=0)
        try:
            return seconds(lambda: unet(sample, timestep))
        finally:
            remove_tome(unet)

    times: dict[str, list[float]] = {}

    def one_round() -> None:
        for i in range(LAYER_REPEATS):
            shift = (len(times.get("ours", ())) + i) % len(LAYER_VARIANTS)  # rotate the order
            for variant in LAYER_VARIANTS[shift:] + LAYER_VARIANTS[:shift]:
                times.setdefault(variant, []).append(time_layers(variant))
        for merged in (False, True):
            key = "forward_ours" if merged else "forward_unpatched"
            times.setdefault(key, []).append(time_forward(merged))

    one_round()  # warm up every path, then start counting
    times.clear()
    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)

    med = {name: statistics.median(values) for name, values in times.items()}
    info = {
        "layers": len(layers),
        "tokens": 32 * 32,
        "samples": {name: len(values) for name, values in times.items()},
        **{f"{name}_ms": round(value * 1e3, 2) for name, value in med.items()},
        "ours/unpatched": med["ours"] / med["unpatched"],
        "tomesd/unpatched": med["tomesd"] / med["unpatched"],
        "ideal/unpatched": med["ideal"] / med["unpatched"],
        "ours/tomesd": med["ours"] / med["tomesd"],
        "merge_overhead_ours_ms": (med["ours"] - med["ideal"]) * 1e3,
        "merge_overhead_tomesd_ms": (med["tomesd"] - med["ideal"]) * 1e3,
        "forward_speedup": med["forward_unpatched"] / med["forward_ours"],
    }
    benchmark.extra_info.update(info)
    print("\n" + "\n".join(f"  {key}: {value}" for key, value in info.items()))
    assert info["ours/tomesd"] <= 1.10, f"our merge is slower than tomesd's: {info}"
