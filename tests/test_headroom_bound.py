"""The headroom's Amdahl bound holds for the speedup it bounds: both are measured the same way
(one torch thread, the thread's CPU clock), on every embedded CPU model."""

from __future__ import annotations

import time

import pytest
import torch

from pytest_tome.gate.decide.stats import paired_speedup
from pytest_tome.gate.measure.headroom import model_headroom
from pytest_tome.gate.measure.merged_calls import MergedCalls
from pytest_tome.gate.measure.pipeline_calls import run_pipeline
from pytest_tome.gate.measure.plan import TOME_ARGS
from pytest_tome.gate.measure.rounds import interleaved
from pytest_tome.models.embedded import EMBEDDED, build_embedded

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.mark.parametrize("name", list(EMBEDDED))
def test_the_headroom_bound_is_at_or_above_the_measured_speedup(name):
    cpu = torch.device("cpu")
    pipe = build_embedded(name)
    headroom = model_headroom(name, pipe, cpu, repeats=5, threads=1, cpu_clock=True)

    def call():
        return run_pipeline(pipe, steps=2, seed=0, images=1)

    run = interleaved(
        call, call, rounds=5, warmup=1, device=cpu, images_per_call=1, threads=1,
        merged=MergedCalls(pipe, 0.5, seed=0, **TOME_ARGS), clock=time.thread_time,
    )  # fmt: skip
    speedup = paired_speedup(run.time_base, run.time_tome)
    print(f"{name}: share {headroom.share:.1%}, bound {headroom.amdahl_bound:.2f}x, "
          f"speedup {speedup.median:.2f}x {speedup.ci}")  # fmt: skip
    assert headroom.amdahl_bound >= speedup.median, (headroom, speedup)
