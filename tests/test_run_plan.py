"""RunPlan: the timing policy one gate measurement runs with, and no process-wide state."""

from __future__ import annotations

import pytest
import torch

from pytest_tome.gate.measure.plan import CLOCK_CPU, CLOCK_WALL, run_plan
from pytest_tome.session import TomeSession
from pytest_tome.settings import TomeSettings


@pytest.mark.parametrize(
    ("device", "threads", "clock", "worker", "expected"),
    [
        ("cpu", 1, "auto", None, (1, CLOCK_CPU)),
        ("cpu", None, "auto", None, (None, CLOCK_WALL)),
        ("cpu", None, "auto", 3, (3, CLOCK_WALL)),  # an xdist worker's share, while timing
        ("cpu", 2, "cpu", 3, (2, CLOCK_CPU)),
        ("cuda:0", 1, "auto", 3, (None, CLOCK_WALL)),  # a GPU times wall, synced
    ],
)
def test_threads_and_clock_follow_the_settings(device, threads, clock, worker, expected) -> None:
    settings = TomeSettings(device=device, threads=threads, clock=clock)
    plan = run_plan(settings, "tiny-sd", 0.5, "tome", worker)
    assert (plan.threads, plan.clock) == expected


def test_timing_fingerprint_uses_torchs_own_count_only_for_auto() -> None:
    auto = run_plan(TomeSettings(threads=None), "tiny-sd", 0.5, "tome")
    one = run_plan(TomeSettings(threads=1), "tiny-sd", 0.5, "tome")
    assert auto.timing(7) == {"threads": 7, "clock": CLOCK_WALL}
    assert one.timing(7) == {"threads": 1, "clock": CLOCK_CPU}
    assert run_plan(TomeSettings(device="cuda"), "m", 0.5, "tome").timing(7) == {}


def test_resolving_a_workers_session_leaves_torchs_thread_count_alone() -> None:
    """An xdist worker's share of the cores is used while timing, never set process-wide."""
    before = torch.get_num_threads()
    share = 1 if before != 1 else 2
    session = TomeSession(TomeSettings(device="cpu", threads=None), cpu_threads=share)
    session.resolve_device()
    assert torch.get_num_threads() == before
    assert run_plan(session.settings, "m", 0.5, "tome", session.cpu_threads).threads == share
