"""Interleaved timing: pairing, warmup, pytest-benchmark's pedantic, and peak memory."""

from __future__ import annotations

import contextlib
import types

import numpy as np
import pytest
import torch

from pytest_tome.gate.measure import memory
from pytest_tome.gate.measure import rounds as measure
from pytest_tome.gate.measure.rounds import NOT_MEASURED, PairedRun, interleaved, peak_memory

CPU = torch.device("cpu")


class Clock:
    """A fake perf_counter; each fake pipeline call advances it by a known duration."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[str] = []

    def perf_counter(self) -> float:
        return self.now

    def runner(self, side: str, seconds):
        def run():
            index = sum(call == side for call in self.calls)
            self.calls.append(side)
            self.now += seconds(index)
            return f"{side} output {index}"

        return run


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    fake_time = types.SimpleNamespace(perf_counter=fake.perf_counter, thread_time=fake.perf_counter)
    monkeypatch.setattr(measure, "time", fake_time)
    # Timing tests count calls: no memory probe, which on CPU adds untimed calls of its own.
    monkeypatch.setattr(measure, "peak_memory", lambda device: memory.PeakMemory())
    return fake


def make_sides(clock: Clock):
    # Call k of the base side takes 10 + k seconds and of the merged side 1 + k seconds,
    # so every sample says which call it came from.
    return clock.runner("base", lambda k: 10.0 + k), clock.runner("tome", lambda k: 1.0 + k)


def fake_pedantic(*, disabled: bool = False, extra_profile_calls: int = 0):
    """What pytest-benchmark's `pedantic` does with `setup` and `teardown` (its fixture.py)."""

    def pedantic(target, *, setup, teardown, rounds, warmup_rounds, iterations):
        assert iterations == 1
        if disabled:
            setup()
            return target()
        for _ in range(warmup_rounds + rounds):
            assert setup() is None  # a truthy value would be taken as the target's arguments
            result = target()
            teardown()
        for _ in range(extra_profile_calls):
            setup()
            target()
            teardown()
        return result

    return pedantic


def test_own_loop_interleaves_drops_warmup_and_keeps_pairs(clock):
    run = interleaved(*make_sides(clock), rounds=3, warmup=2, device=CPU, images_per_call=2)
    assert clock.calls == ["base", "tome", "tome", "base"] * 2 + ["base", "tome"]  # ABBA
    assert run.time_base == (12 / 2, 13 / 2, 14 / 2)  # calls 2..4, seconds per image
    assert run.time_tome == (3 / 2, 4 / 2, 5 / 2)
    assert (run.output_base, run.output_tome) == ("base output 4", "tome output 4")


def test_abba_order_cancels_an_advantage_of_the_first_call_of_a_round(clock):
    """Whichever call comes first in a round is 1 s slower: the speedup must not lean."""

    def side(name, seconds):
        def run():
            first = len(clock.calls) % 2 == 0
            clock.calls.append(name)
            clock.now += seconds + (1.0 if first else 0.0)

        return run

    run = interleaved(side("base", 4.0), side("tome", 4.0), rounds=4, warmup=0, device=CPU,
                      images_per_call=1)  # fmt: skip
    ratios = [b / t for b, t in zip(run.time_base, run.time_tome)]
    assert ratios == [5 / 4, 4 / 5, 5 / 4, 4 / 5]  # the order effect alternates and cancels


def test_patching_stays_outside_the_timed_calls_and_wraps_every_merged_call(clock):
    events = []

    @contextlib.contextmanager
    def merged():
        events.append("apply")
        clock.now += 100.0  # patching is slow: it must not show in any sample
        yield
        events.append("remove")
        clock.now += 100.0

    base, tome = make_sides(clock)
    run = interleaved(base, tome, rounds=2, warmup=1, device=CPU, images_per_call=1,
                      merged=merged, pedantic=fake_pedantic())  # fmt: skip
    assert run.time_base == (11.0, 12.0) and run.time_tome == (2.0, 3.0)
    assert events == ["apply", "remove"] * 3


def test_threads_are_set_while_timing_and_restored_after():
    before = torch.get_num_threads()
    seen = []

    def run():
        seen.append(torch.get_num_threads())

    target = 1 if before != 1 else 2
    interleaved(run, run, rounds=2, warmup=0, device=CPU, images_per_call=1, threads=target)
    assert set(seen) == {target}
    assert torch.get_num_threads() == before


def test_undecided_rounds_are_added_until_decided_or_the_limit(clock):
    asked = []

    def undecided(base, tome):
        asked.append(len(base))
        return len(base) < 5

    run = interleaved(*make_sides(clock), rounds=3, warmup=1, device=CPU, images_per_call=1,
                      max_rounds=8, undecided=undecided)  # fmt: skip
    assert asked == [3, 4, 5] and len(run.time_base) == len(run.time_tome) == 5
    capped = interleaved(*make_sides(clock), rounds=3, warmup=0, device=CPU, images_per_call=1,
                         max_rounds=4, undecided=lambda b, t: True)  # fmt: skip
    assert len(capped.time_tome) == 4


@pytest.mark.parametrize(
    "pedantic",
    [fake_pedantic(), fake_pedantic(extra_profile_calls=2), fake_pedantic(disabled=True)],
    ids=["enabled", "with-cprofile", "disabled"],
)
def test_pedantic_keeps_the_same_pairs_as_our_own_loop(clock, pedantic):
    run = interleaved(
        *make_sides(clock), rounds=3, warmup=2, device=CPU, images_per_call=1, pedantic=pedantic
    )
    assert run.time_base == (12.0, 13.0, 14.0)
    assert run.time_tome == (3.0, 4.0, 5.0)


def test_pedantic_gets_the_merged_call_as_target_and_the_rounds_asked_for(clock):
    seen = {}

    def pedantic(target, **kwargs):
        seen.update(kwargs, target=target)
        return fake_pedantic()(target, **kwargs)

    interleaved(
        *make_sides(clock), rounds=4, warmup=1, device=CPU, images_per_call=1, pedantic=pedantic
    )
    assert {k: seen[k] for k in ("rounds", "warmup_rounds", "iterations")} == {
        "rounds": 4,
        "warmup_rounds": 1,
        "iterations": 1,
    }
    assert seen["target"]() == "tome output 5"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rounds": 1}, "rounds must be an integer >= 2"),
        ({"rounds": True}, "rounds"),
        ({"warmup": -1}, "warmup must be an integer >= 0"),
        ({"images_per_call": 0}, "images_per_call"),
    ],
)
def test_bad_counts_are_refused_before_anything_runs(kwargs, match):
    calls = []
    arguments = {"rounds": 3, "warmup": 1, "device": CPU, "images_per_call": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        interleaved(lambda: calls.append(1), lambda: calls.append(2), **arguments)
    assert calls == []


def test_a_device_without_a_peak_counter_reports_not_measured_never_zero():
    run = interleaved(
        lambda: 1, lambda: 2, rounds=2, warmup=0, device=torch.device("meta"), images_per_call=1
    )
    assert (run.memory_base, run.memory_tome) == (None, None)
    assert run.memory_base_samples == run.memory_tome_samples == ()
    assert run.memory_method == NOT_MEASURED


def test_an_intrusive_memory_probe_stays_out_of_the_timed_calls(clock, monkeypatch):
    events: list[str] = []

    class Probe(memory.PeakMemory):
        method, intrusive = "probe", True

        def start(self) -> None:
            events.append(f"start before call {len(clock.calls)}")

        def stop(self) -> int:
            return 7

    monkeypatch.setattr(measure, "peak_memory", lambda device: Probe())
    run = interleaved(*make_sides(clock), rounds=3, warmup=1, device=CPU, images_per_call=1)
    timed_calls = 2 * (1 + 3)
    abba = ["base", "tome", "tome", "base"] * 2
    assert clock.calls == abba + ["base", "tome"] * measure.MEMORY_ROUNDS
    assert events == [
        f"start before call {timed_calls + i}" for i in range(2 * measure.MEMORY_ROUNDS)
    ]
    assert run.time_tome == (2.0, 3.0, 4.0)  # the probe's calls are not timed samples
    assert run.memory_tome_samples == (7,) * measure.MEMORY_ROUNDS
    assert (run.output_base, run.output_tome) == ("base output 3", "tome output 3")


def test_memory_values_are_medians_of_the_rounds():
    run = PairedRun((1.0,) * 3, (1.0,) * 3, (10, 30, 20), (5, 7, 100), "x", None, None)
    assert (run.memory_base, run.memory_tome) == (20, 7)


cpu_peak = peak_memory(CPU)
needs_rss = pytest.mark.skipif(
    cpu_peak.method == NOT_MEASURED, reason="no /proc/self/clear_refs or glibc malloc_trim here"
)


@needs_rss
def test_peak_rss_sees_memory_a_call_touches_and_frees():
    mib = 2**20

    def allocate():
        block = np.ones(64 * mib, dtype=np.uint8)  # written, so resident
        return int(block[::4096].sum())

    run = interleaved(lambda: 0, allocate, rounds=3, warmup=1, device=CPU, images_per_call=1)
    assert run.memory_method == "peak RSS growth"
    assert all(sample >= 60 * mib for sample in run.memory_tome_samples)
    assert all(sample < 16 * mib for sample in run.memory_base_samples)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_peak_counts_a_block_allocated_during_the_call():
    device = torch.device("cuda")

    def allocate():
        return torch.ones(32 * 2**20, dtype=torch.uint8, device=device).sum().item()

    run = interleaved(lambda: 0, allocate, rounds=2, warmup=1, device=device, images_per_call=1)
    assert run.memory_method == "cuda peak growth"
    assert run.memory_tome - run.memory_base >= 32 * 2**20
    assert run.memory_base < 2**20  # the weights-free growth of a call that allocates nothing


BENCHMARK_TEST = """
    import time
    import torch
    from pytest_tome.gate.measure.rounds import interleaved

    ROUNDS, WARMUP = 4, 2

    def test_merged(benchmark, request):
        calls = []

        def base():
            calls.append("base")

        def tome():
            calls.append("tome")
            time.sleep(0.02)  # a floor, not a limit: only the target sleeps

        # Pass pedantic even when the benchmark is disabled (--benchmark-disable, xdist): it
        # then runs one pair and interleaved() makes up the rest; a fixture left unused would
        # warn "Benchmark fixture was not used at all".
        run = interleaved(base, tome, rounds=ROUNDS, warmup=WARMUP, device=torch.device("cpu"),
                          images_per_call=1, pedantic=benchmark.pedantic)
        assert len(run.time_base) == len(run.time_tome) == ROUNDS
        abba = ["base", "tome", "tome", "base"] * ((WARMUP + ROUNDS) // 2)
        assert calls[: 2 * (WARMUP + ROUNDS)] == abba
        assert min(run.time_tome) >= 0.02 > max(run.time_base)
        if not benchmark.disabled:
            data = benchmark.stats.stats.data
            assert len(data) == ROUNDS and min(data) >= 0.02  # it timed the merged call
"""


@pytest.mark.parametrize(
    "options", [(), ("--benchmark-disable",), ("-n", "1")], ids=["enabled", "disabled", "xdist"]
)
def test_with_the_real_benchmark_fixture(pytester: pytest.Pytester, options):
    pytester.makepyfile(BENCHMARK_TEST)
    result = pytester.runpytest(
        "-p", "no:tome", "-p", "no:randomly", "-p", "no:cacheprovider", *options
    )
    result.assert_outcomes(passed=1)
