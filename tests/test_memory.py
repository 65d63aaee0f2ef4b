"""CUDA peak memory is gated on what a call adds, not on the absolute peak (weights
included): the arithmetic, on the CPU, with a fake of torch.cuda's memory counters."""

from __future__ import annotations

import torch

from pytest_tome.gate.decide.tolerances import Tolerances
from pytest_tome.gate.decide.verdicts import decide
from pytest_tome.gate.measure.memory import CudaPeakMemory
from pytest_tome.gate.results import FAIL, MEMORY_CUDA, RatioResult

GIB, MIB = 2**30, 2**20


class FakeCuda:
    """torch.cuda's allocator counters: bytes allocated now, and the peak since a reset."""

    def __init__(self, allocated: int) -> None:
        self.allocated = self.peak = allocated

    def reset_peak_memory_stats(self, device: torch.device) -> None:
        self.peak = self.allocated

    def memory_allocated(self, device: torch.device) -> int:
        return self.allocated

    def max_memory_allocated(self, device: torch.device) -> int:
        return self.peak

    def alloc(self, size: int) -> None:
        self.allocated += size
        self.peak = max(self.peak, self.allocated)

    def free(self, size: int) -> None:
        self.allocated -= size


def call_peak(cuda: FakeCuda, activations: int) -> int | None:
    probe = CudaPeakMemory(torch.device("cuda", 0), cuda=cuda)
    probe.start()
    cuda.alloc(activations)
    cuda.free(activations)
    return probe.stop()


def test_the_peak_is_counted_above_what_the_call_found_allocated() -> None:
    cuda = FakeCuda(allocated=4 * GIB)  # the weights, resident before the call
    assert call_peak(cuda, 300 * MIB) == 300 * MIB
    cuda.alloc(1 * GIB)  # more resident memory between calls moves the start, not the growth
    assert call_peak(cuda, 300 * MIB) == 300 * MIB
    assert call_peak(cuda, 0) == 0


def test_an_activation_regression_behind_gigabytes_of_weights_fails() -> None:
    """With the absolute peak, 300 -> 450 MiB of activations over 4 GiB of weights read as
    4.29 -> 4.44 GiB (+3.4%), inside 10%: unseen. As growth it is +50% and fails."""
    samples = {}
    for name, activations in (("base", 300 * MIB), ("worse", 450 * MIB)):
        cuda = FakeCuda(allocated=4 * GIB)
        samples[name] = tuple(call_peak(cuda, activations) for _ in range(6))
    times = (1.0,) * 6, (0.5,) * 6

    def result(memory: tuple[int, ...]) -> RatioResult:
        return RatioResult(
            "m", 0.5, "cuda", time_base=times[0], time_tome=times[1],
            memory_tome_samples=memory, memory_base_samples=memory,
            memory_tome=memory[0], memory_base=memory[0], memory_method=MEMORY_CUDA,
        )  # fmt: skip

    decision = decide(
        result(samples["worse"]), result(samples["base"]), Tolerances(), quality_applies=False
    )
    row = next(row for row in decision.rows if row.metric == "peak memory")
    assert row.status == FAIL, decision.table
