"""The wait check: a merged path that sleeps is caught by the wall clock; a busy neighbour,
which stretches both paths alike, is not flagged (synthetic rounds, then real clocks)."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from pytest_tome.gate.decide.tolerances import Tolerances
from pytest_tome.gate.decide.verdicts import decide
from pytest_tome.gate.decide.waits import merged_waits
from pytest_tome.gate.results import FAIL, PASS, RatioResult

ROUNDS = 8


def rounds(rng, *, neighbour: bool, sleep_share: float, speedup: float = 1.5) -> RatioResult:
    """CPU seconds of each call, and wall seconds stretched by a neighbour that takes the core
    for a random share of each round (both calls of a round alike), plus a planted sleep."""
    cpu_base = 1.0 * (1 + 0.02 * rng.standard_normal(ROUNDS))
    cpu_tome = cpu_base / speedup * (1 + 0.02 * rng.standard_normal(ROUNDS))
    stretch = rng.uniform(1.0, 5.0, ROUNDS) if neighbour else np.ones(ROUNDS)
    jitter = lambda: 1 + 0.03 * rng.random(ROUNDS)
    wall_base = cpu_base * stretch * jitter()
    wall_tome = cpu_tome * stretch * jitter() + sleep_share * cpu_tome  # a sleep: not stretched
    return RatioResult(
        "tiny-ldm", 0.5, "cpu",
        time_base=tuple(cpu_base), time_tome=tuple(cpu_tome),
        wall_base=tuple(wall_base), wall_tome=tuple(wall_tome),
        cpu_base=tuple(cpu_base), cpu_tome=tuple(cpu_tome),
    )  # fmt: skip


@pytest.fixture
def baseline() -> RatioResult:
    return rounds(np.random.default_rng(0), neighbour=False, sleep_share=0.0)


@pytest.mark.parametrize("seed", range(20))
def test_a_busy_neighbour_with_no_change_is_not_flagged(seed, baseline):
    current = rounds(np.random.default_rng(seed + 1), neighbour=True, sleep_share=0.0)
    waits = merged_waits(current)
    assert waits is not None and not waits.significant, waits
    assert decide(current, baseline, Tolerances(), quality_applies=False).verdict == PASS


@pytest.mark.parametrize("neighbour", [False, True])
def test_a_planted_sleep_of_40_percent_fails_and_says_the_merged_path_waits(neighbour, baseline):
    current = rounds(np.random.default_rng(5), neighbour=neighbour, sleep_share=0.4)
    decision = decide(current, baseline, Tolerances(), quality_applies=False)
    assert decision.verdict == FAIL, decision.table
    why = decision.rows[0].why
    assert "the merged path waits" in why and "ms per image beyond its CPU time" in why


def test_a_run_timed_by_the_wall_clock_needs_no_wait_check(baseline):
    current = rounds(np.random.default_rng(5), neighbour=False, sleep_share=0.4)
    walled = RatioResult(
        **{**current.__dict__, "time_base": current.wall_base, "time_tome": current.wall_tome}
    )
    assert merged_waits(walled) is None


def _work(size: int) -> None:
    a = torch.ones(size, size)
    for _ in range(6):
        a = (a @ a).clamp_(max=1.0)


def _real_run(sleep_share: float):
    from pytest_tome.gate.measure.rounds import interleaved

    def tome() -> None:
        start = time.thread_time()
        _work(192)
        if sleep_share:
            time.sleep(sleep_share * (time.thread_time() - start))

    return interleaved(
        lambda: _work(256), tome, rounds=ROUNDS, warmup=1, device=torch.device("cpu"),
        images_per_call=1, threads=1, clock=time.thread_time,
    )  # fmt: skip


def _as_result(run) -> RatioResult:
    return RatioResult(
        "m", 0.5, "cpu", time_base=run.time_base, time_tome=run.time_tome,
        wall_base=run.wall_base, wall_tome=run.wall_tome,
        cpu_base=run.cpu_base, cpu_tome=run.cpu_tome,
    )  # fmt: skip


def test_real_clocks_catch_a_real_sleep_and_not_a_real_neighbour():
    """Both clocks are recorded for every timed call; a spinning process beside an unchanged
    merged path is not flagged, a sleep of 40% of the merged call's CPU time is."""
    spin = "import time\nt = time.time()\nwhile time.time() - t < 120: pass"
    neighbour = subprocess.Popen([sys.executable, "-c", spin])
    try:
        busy = _real_run(0.0)
        slept = _real_run(0.4)
    finally:
        neighbour.kill()
        neighbour.wait()
    assert len(busy.wall_tome) == len(busy.cpu_tome) == ROUNDS
    assert all(w >= c * 0.99 for w, c in zip(busy.wall_tome, busy.cpu_tome))
    assert busy.time_tome == busy.cpu_tome
    calm, waiting = merged_waits(_as_result(busy)), merged_waits(_as_result(slept))
    assert calm is not None and not calm.significant, calm
    assert waiting is not None and waiting.significant and waiting.stretch > 1.2, waiting
