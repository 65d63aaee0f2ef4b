"""Headroom: the share of a forward spent in the patched layers, on toy modules of known cost.

Only ratios within one run are asserted: a layer that sleeps 20 ms next to one that does
nothing takes most of the forward, whatever the machine's speed.
"""

from __future__ import annotations

import time

import pytest
import torch

from pytest_tome.gate.measure.headroom import measure_headroom


class Sleep(torch.nn.Module):
    def __init__(self, seconds: float, inner: torch.nn.Module | None = None) -> None:
        super().__init__()
        self.seconds = seconds
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return self.inner(x) if self.inner is not None else x


class MatMul(torch.nn.Module):
    def __init__(self, size: int, times: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.eye(size) * 0.5, requires_grad=False)
        self.times = times

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.times):
            x = x @ self.weight
        return x


def hook_count(module: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


def forward_of(model: torch.nn.Module, size: int = 8):
    x = torch.ones(1, size)
    return lambda: model(x)


def test_a_slow_layer_takes_most_of_the_forward_and_a_fast_one_little():
    slow, fast = Sleep(0.02), Sleep(0.0)
    model = torch.nn.Sequential(slow, fast)
    big = measure_headroom("toy", [slow], forward_of(model))
    small = measure_headroom("toy", [fast], forward_of(model))
    assert big.share > 0.8
    assert small.share < 0.2
    assert big.layers == 1
    assert big.amdahl_bound > 5 > small.amdahl_bound


def test_heavy_matmul_outweighs_a_light_one():
    heavy, light = MatMul(128, 200), MatMul(128, 1)
    model = torch.nn.Sequential(heavy, light)
    run = forward_of(model, 128)
    with torch.no_grad():
        heavy_share = measure_headroom("toy", [heavy], run).share
        light_share = measure_headroom("toy", [light], run).share
    assert heavy_share > 5 * light_share


def test_nested_layers_are_counted_once():
    inner = Sleep(0.02)
    outer = Sleep(0.0, inner=inner)
    model = torch.nn.Sequential(outer, Sleep(0.02))
    room = measure_headroom("toy", [outer, inner], forward_of(model))
    assert room.layers == 2
    assert 0.3 < room.share < 0.7  # counting the inner layer twice would give 1.0


def test_the_same_layer_twice_is_one_layer():
    slow = Sleep(0.005)
    room = measure_headroom("toy", [slow, slow], forward_of(torch.nn.Sequential(slow)))
    assert room.layers == 1
    assert hook_count(slow) == 0


def test_hooks_are_removed_after_measuring():
    slow = Sleep(0.001)
    model = torch.nn.Sequential(slow, Sleep(0.001))
    before = hook_count(model)
    measure_headroom("toy", [slow], forward_of(model))
    assert hook_count(model) == before


def test_hooks_are_removed_when_the_forward_fails():
    class Broken(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("out of memory")

    broken = Broken()
    model = torch.nn.Sequential(Sleep(0.0), broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        measure_headroom("toy", list(model), forward_of(model))
    assert hook_count(model) == 0


def test_warm_up_then_repeats_with_sync_around_every_clock_reading():
    calls: list[str] = []
    slow = Sleep(0.001)
    model = torch.nn.Sequential(slow)

    def run() -> object:
        calls.append("forward")
        return model(torch.ones(1))

    measure_headroom("toy", [slow], run, repeats=4, sync=lambda: calls.append("sync"))
    assert calls.count("forward") == 5
    # per timed forward: around the whole call, and on entering and leaving the layer
    assert calls.count("sync") == 5 * 2 + 4 * 2


def test_no_patched_layers_means_no_headroom():
    room = measure_headroom("ddpm", [], lambda: pytest.fail("nothing to time"))
    assert (room.share, room.layers, room.amdahl_bound) == (0.0, 0, 1.0)


@pytest.mark.parametrize("repeats", [0, -1, 1.5, True])
def test_bad_repeats_are_refused(repeats):
    with pytest.raises(ValueError, match=f"repeats must be a whole number >= 1, got {repeats!r}"):
        measure_headroom("toy", [Sleep(0.0)], lambda: None, repeats=repeats)


def test_a_non_module_is_refused():
    with pytest.raises(TypeError, match="torch.nn.Module objects, got str"):
        measure_headroom("toy", ["attn"], lambda: None)  # type: ignore[list-item]


def test_headroom_reads_the_timing_clock_so_a_waiting_layer_is_not_counted_on_cpu_time():
    """On one CPU thread the gate times the thread's CPU seconds; headroom reads the same
    clock, so a layer that only waits takes a large wall share but almost no CPU share."""
    import time

    from pytest_tome.gate.measure.headroom import measure_headroom

    class Waits(torch.nn.Module):
        def forward(self, x):
            time.sleep(0.05)
            return x

    waiting = Waits()

    def forward() -> None:
        waiting(torch.ones(1))
        end = time.thread_time() + 0.02  # work outside the layer, on this thread's CPU
        while time.thread_time() < end:
            pass

    wall = measure_headroom("m", [waiting], forward, repeats=3)
    cpu = measure_headroom("m", [waiting], forward, repeats=3, clock=time.thread_time)
    assert cpu.share < 0.1
    assert wall.share > 2 * cpu.share


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA events need a CUDA device")
def test_on_cuda_headroom_times_with_events_and_never_synchronizes_in_a_hook(monkeypatch):
    heavy = torch.nn.Linear(2048, 2048).cuda()
    light = torch.nn.Linear(64, 64).cuda()
    x, y = torch.randn(512, 2048, device="cuda"), torch.randn(512, 64, device="cuda")

    def forward() -> None:
        for _ in range(20):  # twenty hooked calls per forward
            heavy(x)
        light(y)

    syncs = []
    real = torch.cuda.synchronize
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: (syncs.append(1), real(*a))[1])
    headroom = measure_headroom("m", [heavy], forward, repeats=3, cuda_events=True)
    assert 0.8 < headroom.share <= 1.0
    assert len(syncs) <= 2 * 3  # once the forward is done, per repeat: not in the 20 hooks
