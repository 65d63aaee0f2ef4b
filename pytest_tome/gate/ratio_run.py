"""One measurement of the gate: a model at one ratio, unmerged and merged calls interleaved,
merging that stopped at run time caught, and the samples turned into a RatioResult."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from pytest_tome.failures import fail_test_on
from pytest_tome.gate.results import ImageThumb, RatioResult
from pytest_tome.methods import METHOD_TOME

if TYPE_CHECKING:
    from pytest_tome.gate.check import Gate

# The ToMe arguments the gate measures with (tomesd's, and apply_tome's share_matching and
# backend defaults); part of every fingerprint.
TOME_ARGS: Mapping[str, Any] = MappingProxyType(
    {
        "sx": 2,
        "sy": 2,
        "max_downsample": 1,
        "use_rand": True,
        "merge_attn": True,
        "merge_crossattn": False,
        "merge_mlp": False,
        "share_matching": True,  # apply_tome's defaults: what users get
        "backend": "pytest-tome",
    }
)


def measure_ratio(gate: Gate, ratio: float, method: str) -> RatioResult:
    """Time, check and score `gate`'s pipeline at `ratio`; fails the test if merging stopped."""
    import torch

    from pytest_tome.engine import TomeNotApplicable, apply_tome
    from pytest_tome.gate.measure import interleaved
    from pytest_tome.gate.quality import image_quality
    from pytest_tome.gate.runs import run_pipeline
    from pytest_tome.gate.runtime import MergedCalls, MergingStopped, unchanged_images
    from pytest_tome.gate.stats import paired_speedup

    s = gate.session.settings
    with fail_test_on(TomeNotApplicable, prefix=f"{gate.spec.name}: "):
        # a no-op fails now
        patched = apply_tome(gate.pipe, ratio, seed=s.seed, method=method, **TOME_ARGS)
    layers = len(patched.layers)
    patched.remove()

    def call() -> np.ndarray:  # one pipeline call, merged or not as the pipeline is now
        return run_pipeline(gate.pipe, steps=s.steps, seed=s.seed, images=s.images)

    merged = MergedCalls(gate.pipe, ratio, seed=s.seed, method=method, **TOME_ARGS)
    done, start = [0], time.perf_counter()

    @contextmanager
    def merged_call() -> Iterator[None]:
        """ToMe around one merged call, then progress: both outside the timed part."""
        with merged():
            yield
        done[0] += 1
        total, most = s.warmup + s.rounds, s.warmup + max(s.rounds, s.max_rounds)
        step = (
            f"round {done[0]}/{total}"
            if done[0] <= total
            else f"round {done[0]} of up to {most}, too noisy so far"
            if done[0] <= most
            else "peak memory (untimed)"
        )
        elapsed = time.perf_counter() - start
        gate.progress(f"{gate.spec.name} {run_label(method, ratio)}: {step} ({elapsed:.0f} s)")

    device = torch.device(s.device)
    try:
        paired = interleaved(
            call,
            call,  # merged: `merged_call` patches the pipeline around it
            rounds=s.rounds,
            warmup=s.warmup,
            device=device,
            images_per_call=s.images,
            pedantic=gate.pedantic,
            merged=merged_call,
            threads=s.threads if device.type == "cpu" else None,
            max_rounds=s.max_rounds,
            undecided=gate.undecided(ratio, method),
            clock=time.thread_time if gate.timing().get("clock") == "cpu" else None,
        )
        stopped = unchanged_images(paired.output_base, paired.output_tome, ratio)
    except MergingStopped as exc:
        stopped = list(exc.lines)
    if stopped:
        device_key = gate.device_key()
        gate.record(
            RatioResult(gate.spec.key, ratio, device_key, verdict="fail",
                        reasons=tuple(stopped), method=method)
        )  # fmt: skip
        pytest.fail(
            f"ToMe gate failed for {gate.spec.name} at ratio {ratio:g}:\n" + "\n".join(stopped),
            pytrace=False,
        )
    speedup = paired_speedup(paired.time_base, paired.time_tome)
    psnr = ssim = None
    if not gate.spec.weights_are_random:
        quality = image_quality(paired.output_base, paired.output_tome)
        psnr, ssim = quality.psnr, quality.ssim
    return RatioResult(
        model=gate.spec.key,
        ratio=ratio,
        device=gate.device_key(),
        time_base=paired.time_base,
        time_tome=paired.time_tome,
        speedup=speedup.median,
        speedup_ci=speedup.ci,
        memory_base=paired.memory_base,
        memory_tome=paired.memory_tome,
        memory_base_samples=paired.memory_base_samples,
        memory_tome_samples=paired.memory_tome_samples,
        memory_method=paired.memory_method,
        psnr=psnr,
        ssim=ssim,
        patched_layers=layers,
        image_base=thumbnail(paired.output_base),
        image_tome=thumbnail(paired.output_tome),
        method=method,
    )


def thumbnail(images: np.ndarray | None) -> ImageThumb | None:
    """The first image, downscaled PNG, for the report's grid."""
    if images is None or len(images) == 0:
        return None
    return ImageThumb.from_array(images[0])


def run_label(method: str, ratio: float) -> str:
    """`r0.5` for ToMe, `todo r0.75` for the other methods."""
    return f"r{ratio:g}" if method == METHOD_TOME else f"{method} r{ratio:g}"
