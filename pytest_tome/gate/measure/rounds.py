"""Interleaved timing of the unmerged and merged pipeline call, with peak memory.

Each round runs the unmerged and the merged call back to back, so that drift on a shared
machine (other jobs, clock changes, thermal throttling) hits both sides alike and their ratio
stays a fair paired sample. The order alternates (ABBA: base first in even rounds, merged
first in odd ones) so an order effect cancels, in our own loop and under pytest-benchmark's
`pedantic` alike. Patching and unpatching happen outside the timed calls, and torch runs
with a fixed intra-op thread count (one, by default on the CPU) while timing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch

from pytest_tome.gate.measure.clocks import synchronizer, torch_threads
from pytest_tome.gate.measure.memory import peak_memory
from pytest_tome.gate.results import NOT_MEASURED

T = TypeVar("T")


# Untimed pairs of calls for a memory probe that would disturb timing (CPU peak RSS). One:
# peak RSS growth is reported, not gated, so a second pair would cost time and decide nothing.
MEMORY_ROUNDS = 1


@dataclass(frozen=True)
class PairedRun(Generic[T]):
    """Raw samples of one model at one ratio: round i of each side was measured back to back."""

    time_base: tuple[float, ...]  # seconds per image, by the configured clock
    time_tome: tuple[float, ...]
    memory_base_samples: tuple[int, ...]  # peak bytes of each call; empty: not measured
    memory_tome_samples: tuple[int, ...]
    memory_method: str
    output_base: T  # what the last unmerged call returned, for quality
    output_tome: T
    # Both clocks of the same calls: wall seconds and the timing thread's CPU seconds per image
    wall_base: tuple[float, ...] = ()
    wall_tome: tuple[float, ...] = ()
    cpu_base: tuple[float, ...] = ()
    cpu_tome: tuple[float, ...] = ()

    @property
    def memory_base(self) -> int | None:
        """Median peak bytes of one unmerged call, or None when not measured."""
        return _median_int(self.memory_base_samples)

    @property
    def memory_tome(self) -> int | None:
        return _median_int(self.memory_tome_samples)


def _median_int(samples: tuple[int, ...]) -> int | None:
    return round(statistics.median(samples)) if samples else None


class _Recorder(Generic[T]):
    """Times each call of either side in ABBA order and keeps the samples in round order.

    Round i runs (unmerged, merged) when i is even and (merged, unmerged) when i is odd, so
    whatever the first call of a pair gains or loses (caches, clocks) cancels over the rounds.
    `merged()` is entered before each merged call and left after it, outside the timed part.
    Every call is read by both clocks too (wall, and the calling thread's CPU time), so a
    merged path that waits (sleep, I/O, a lock, another thread) shows (decide.waits).
    """

    def __init__(
        self,
        run_base: Callable[[], T],
        run_tome: Callable[[], T],
        merged: Callable[[], AbstractContextManager[Any]],
        device: torch.device,
        images_per_call: int,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.run_base, self.run_tome, self.merged = run_base, run_tome, merged
        self.clock = clock
        self.sync, self.memory = synchronizer(device), peak_memory(device)
        self.images = images_per_call
        self.times: dict[str, list[float]] = {"base": [], "tome": []}
        self.walls: dict[str, list[float]] = {"base": [], "tome": []}
        self.cpus: dict[str, list[float]] = {"base": [], "tome": []}
        self.peaks: dict[str, list[int | None]] = {"base": [], "tome": []}
        self.outputs: dict[str, Any] = {}
        self._patch = ExitStack()
        self._round = 0  # the round the next setup() starts

    def _timed(self, side: str, run: Callable[[], T]) -> T:
        probe = not self.memory.intrusive
        self.sync()
        if probe:
            self.memory.start()
        clock = self.clock or time.perf_counter
        own = clock not in (time.perf_counter, time.thread_time)  # a clock a test injected
        start = clock() if own else 0.0
        wall, cpu = time.perf_counter(), time.thread_time()
        output = run()
        self.sync()
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        elapsed = clock() - start if own else cpu if clock is time.thread_time else wall
        self.peaks[side].append(self.memory.stop() if probe else None)
        self.times[side].append(elapsed / self.images)
        self.walls[side].append(wall / self.images)
        self.cpus[side].append(cpu / self.images)
        self.outputs[side] = output
        return output

    # pytest-benchmark's pedantic runs setup(), the timed target(), then teardown() each round.
    def setup(self) -> None:  # None: pytest-benchmark reads a setup's return value as arguments
        if self._round % 2 == 0:
            self._timed("base", self.run_base)
        self._patch.enter_context(self.merged())

    def target(self) -> T:
        return self._timed("tome", self.run_tome)

    def teardown(self) -> None:
        self._patch.close()
        if self._round % 2 == 1:
            self._timed("base", self.run_base)
        self._round += 1

    def one_round(self) -> None:
        self.setup()
        try:
            self.target()
        finally:
            self.teardown()

    def untimed_peaks(self, rounds: int) -> dict[str, tuple[int, ...]]:
        """Peak memory from extra untimed pairs of calls, for a probe that disturbs timing."""
        peaks: dict[str, list[int]] = {"base": [], "tome": []}
        for _ in range(rounds):
            for side, run in (("base", self.run_base), ("tome", self.run_tome)):
                with self.merged() if side == "tome" else nullcontext():
                    self.sync()
                    self.memory.start()
                    run()
                    self.sync()
                    peak = self.memory.stop()
                if peak is not None:
                    peaks[side].append(peak)
        return {side: tuple(samples) for side, samples in peaks.items()}

    def pairs(self) -> int:
        return min(len(self.times["base"]), len(self.times["tome"]))

    def keep_pairs(self, limit: int | None = None) -> None:
        """Close an open patch and keep whole pairs only (at most `limit`), so rounds line up.

        A disabled benchmark runs setup() and target() once, without teardown(); cProfile
        adds rounds after the timed ones: both leave calls that belong to no wanted pair.
        """
        self._patch.close()
        n = self.pairs() if limit is None else min(self.pairs(), limit)
        for samples in (
            *self.times.values(),
            *self.walls.values(),
            *self.cpus.values(),
            *self.peaks.values(),
        ):
            del samples[n:]
        self._round = n


def _check_count(name: str, value: object, minimum: int, why: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} ({why}), got {value!r}")


def interleaved(
    run_base: Callable[[], T],
    run_tome: Callable[[], T],
    *,
    rounds: int,
    warmup: int,
    device: torch.device,
    images_per_call: int,
    pedantic: Callable[..., Any] | None = None,
    merged: Callable[[], AbstractContextManager[Any]] = nullcontext,
    threads: int | None = None,
    max_rounds: int | None = None,
    undecided: Callable[[tuple[float, ...], tuple[float, ...]], bool] | None = None,
    clock: Callable[[], float] | None = None,
) -> PairedRun[T]:
    """Warm up, then time `rounds` ABBA-ordered pairs (unmerged, merged) of whole calls.

    `merged()` (a context manager: apply ToMe, remove it) wraps each merged call outside the
    timed part. With `threads`, torch uses that many intra-op threads throughout; `clock`
    (default: wall time, `time.perf_counter`) times each call. After the
    configured rounds, while `undecided(time_base, time_tome)` holds, one more round is added
    until `max_rounds`: noise is met with more samples, not with a guess.

    With `pedantic` (pytest-benchmark's `benchmark.pedantic`) the merged call is the timed
    target and the unmerged call runs in its untimed `setup` (even rounds) or `teardown` (odd
    rounds), so pytest-benchmark reports the merged run while we still time both sides.
    Pairs pedantic skipped (a disabled benchmark runs the target once) are made up by our own
    loop, so pass `benchmark.pedantic` even when the benchmark is disabled.
    """
    _check_count("rounds", rounds, 2, "a spread needs two paired samples")
    _check_count("warmup", warmup, 0, "untimed rounds before timing")
    _check_count("images_per_call", images_per_call, 1, "images one pipeline call makes")
    if threads is not None:
        _check_count("threads", threads, 1, "torch intra-op threads while timing")
    limit = max(rounds, max_rounds or rounds)
    recorder = _Recorder(run_base, run_tome, merged, device, images_per_call, clock)
    total = warmup + rounds
    with torch_threads(threads):
        try:
            if pedantic is not None:
                pedantic(
                    recorder.target,
                    setup=recorder.setup,
                    teardown=recorder.teardown,
                    rounds=rounds,
                    warmup_rounds=warmup,
                    iterations=1,
                )
        finally:
            recorder.keep_pairs(total)
        while recorder.pairs() < total:
            recorder.one_round()
        while (
            undecided is not None
            and recorder.pairs() < warmup + limit
            and undecided(
                tuple(recorder.times["base"][warmup:]), tuple(recorder.times["tome"][warmup:])
            )
        ):
            recorder.one_round()
        kept = slice(warmup, recorder.pairs())
        if recorder.memory.intrusive:
            expected = MEMORY_ROUNDS
            peaks = recorder.untimed_peaks(MEMORY_ROUNDS)
        else:
            expected = recorder.pairs() - warmup
            peaks = {
                side: tuple(p for p in recorder.peaks[side][kept] if p is not None)
                for side in ("base", "tome")
            }
    measured = all(len(samples) == expected for samples in peaks.values())
    return PairedRun(
        time_base=tuple(recorder.times["base"][kept]),
        time_tome=tuple(recorder.times["tome"][kept]),
        wall_base=tuple(recorder.walls["base"][kept]),
        wall_tome=tuple(recorder.walls["tome"][kept]),
        cpu_base=tuple(recorder.cpus["base"][kept]),
        cpu_tome=tuple(recorder.cpus["tome"][kept]),
        memory_base_samples=peaks["base"] if measured else (),
        memory_tome_samples=peaks["tome"] if measured else (),
        memory_method=recorder.memory.method if measured else NOT_MEASURED,
        output_base=recorder.outputs["base"],
        output_tome=recorder.outputs["tome"],
    )
