"""One measurement of the gate: a model at one ratio, unmerged and merged calls interleaved,
merging that stopped at run time caught, and the samples turned into a RatioResult."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from pytest_tome.gate.measure.merged_calls import (
    PREFIX,
    MergedCalls,
    MergingStopped,
    unchanged_images,
)
from pytest_tome.gate.measure.plan import CLOCK_CPU, RunPlan, tome_args
from pytest_tome.gate.results import ImageThumb, RatioResult
from pytest_tome.methods import METHOD_TOME

Undecided = Callable[[tuple[float, ...], tuple[float, ...]], bool]


def measure_ratio(
    pipe: Any,
    plan: RunPlan,
    *,
    model_key: str,
    device_key: str,
    quality: bool,
    pedantic: Callable[..., Any] | None,
    progress: Callable[[str], None],
    undecided: Undecided | None,
) -> RatioResult:
    """Time, check and score `pipe` as `plan` says: raw samples, no statistics, no verdict.

    Raises TomeNotApplicable when ToMe cannot apply, and MergingStopped when merging stopped
    at run time or left the images unchanged. `quality`: score PSNR and SSIM (not for random
    weights).
    """
    import torch

    from pytest_tome.engine import apply_tome
    from pytest_tome.gate.measure import pipeline_calls
    from pytest_tome.gate.measure.quality import image_quality
    from pytest_tome.gate.measure.rounds import interleaved

    ratio, method = plan.ratio, plan.method
    merge_args = tome_args(ratio, method)
    patched = apply_tome(pipe, ratio, seed=plan.seed, method=method, **merge_args)  # no-op raises
    layers = len(patched.layers)
    patched.remove()

    def call() -> np.ndarray:  # one pipeline call, merged or not as the pipeline is now
        return pipeline_calls.run_pipeline(
            pipe, steps=plan.steps, seed=plan.seed, images=plan.images
        )

    merged = MergedCalls(pipe, ratio, seed=plan.seed, method=method, **merge_args)
    done, start = [0], time.perf_counter()

    @contextmanager
    def merged_call() -> Iterator[None]:
        """ToMe around one merged call, then progress: both outside the timed part."""
        with merged():
            yield
        done[0] += 1
        total, most = plan.warmup + plan.rounds, plan.warmup + plan.most_rounds
        step = (
            f"round {done[0]}/{total}"
            if done[0] <= total
            else f"round {done[0]} of up to {most}, too noisy so far"
            if done[0] <= most
            else "peak memory (untimed)"
        )
        elapsed = time.perf_counter() - start
        progress(f"{plan.model} {run_label(method, ratio)}: {step} ({elapsed:.0f} s)")

    paired = interleaved(
        call,
        call,  # merged: `merged_call` patches the pipeline around it
        rounds=plan.rounds,
        warmup=plan.warmup,
        device=torch.device(plan.device),
        images_per_call=plan.images,
        pedantic=pedantic,
        merged=merged_call,
        threads=plan.threads,
        max_rounds=plan.max_rounds,
        undecided=undecided,
        clock=time.thread_time if plan.clock == CLOCK_CPU else None,
    )
    stopped = unchanged_images(paired.output_base, paired.output_tome, ratio)
    if stopped:
        raise MergingStopped([line.removeprefix(PREFIX) for line in stopped])
    psnr = ssim = None
    if quality:
        scores = image_quality(paired.output_base, paired.output_tome)
        psnr, ssim = scores.psnr, scores.ssim
    return RatioResult(
        model=model_key,
        ratio=ratio,
        device=device_key,
        time_base=paired.time_base,
        time_tome=paired.time_tome,
        wall_base=paired.wall_base,
        wall_tome=paired.wall_tome,
        cpu_base=paired.cpu_base,
        cpu_tome=paired.cpu_tome,
        memory_base=paired.memory_base,
        memory_tome=paired.memory_tome,
        memory_base_samples=paired.memory_base_samples,
        memory_tome_samples=paired.memory_tome_samples,
        memory_method=paired.memory_method,
        psnr=psnr,
        ssim=ssim,
        patched_layers=layers,
        merged_layers=merged.layers,
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
