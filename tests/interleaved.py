"""Timing helpers of the benchmarks: variants interleaved, and their ratios paired by repeat.

A busy or drifting machine moves every variant of one repeat alike; a ratio taken within the
repeat cancels that, where a ratio of two medians keeps it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def seconds(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleave(
    variants: dict[str, Callable[[], Any]], rounds: int, repeats: int = 1
) -> dict[str, list[float]]:
    """Seconds of each variant, once per repeat, the order rotated every repeat; one warm-up
    round, dropped. The i-th time of every variant comes from the same repeat."""
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds + 1):
        for i in range(repeats):
            shift = (round_ * repeats + i) % len(names)
            for name in names[shift:] + names[:shift]:
                elapsed = seconds(variants[name])
                if round_ > 0:
                    times[name].append(elapsed)
    return times


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in times.items()}


def paired(
    times: dict[str, list[float]], against: str, *, inverse: bool = False
) -> dict[str, tuple[float, float, float]]:
    """Each variant's time over `against`'s in the same repeat (or `against`'s over the
    variant's, a speedup, if `inverse`): (median, first quartile, third quartile)."""
    found = {}
    for name, values in times.items():
        pairs = zip(times[against], values) if inverse else zip(values, times[against])
        ratios = [a / b for a, b in pairs]
        q1, q2, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
        found[name] = (q2, q1, q3)
    return found


class BlockClock:
    """Seconds spent inside some modules (forward hooks), summed per variant: the part of a
    forward where variants differ, measured in the same forwards as the whole."""

    def __init__(self, modules: list[torch.nn.Module]) -> None:
        self.variant: str | None = None
        self.spent: dict[str, list[float]] = {}
        self._start = 0.0
        self._hooks = [h for m in modules for h in self._watch(m)]

    def _watch(self, module: torch.nn.Module) -> list[Any]:
        def enter(*_: Any) -> None:
            self._start = time.perf_counter()

        def leave(*_: Any) -> None:
            if self.variant is not None:
                self.spent[self.variant][-1] += time.perf_counter() - self._start

        return [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]

    def timing(self, variant: str, fn: Callable[[], Any]) -> Callable[[], None]:
        """`fn`, with the time inside the modules added up for `variant`, call by call."""

        def run() -> None:
            self.variant = variant
            self.spent.setdefault(variant, []).append(0.0)
            try:
                fn()
            finally:
                self.variant = None

        return run

    def median(self, variant: str, skip: int) -> float:
        return statistics.median(self.spent[variant][skip:])

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
