"""How much of a UNet forward the layers ToMe patches take, and so how much it can ever save.

Amdahl's law: if a share s of the time is spent in the patched layers, then even merging that
made those layers free would give at most 1 / (1 - s). On the thesis's DDPM that share is
under 1%, so no merge ratio can help there; measuring it says so before any sweep is run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from pytest_tome.gate.results import Headroom


class _InsideTimer:
    """Forward hooks that add up the time spent inside any of the hooked modules.

    A depth counter makes nested hooked modules (a patched block inside another) count once:
    the clock starts when the outermost one is entered and stops when it is left.
    """

    def __init__(self, sync: Callable[[], None], clock: Callable[[], float]) -> None:
        self.sync, self.clock = sync, clock
        self.depth = 0
        self.started = 0.0
        self.seconds = 0.0

    def enter(self, module: torch.nn.Module, args: Any) -> None:
        if self.depth == 0:
            self.sync()
            self.started = self.clock()
        self.depth += 1

    def leave(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.sync()
            self.seconds += self.clock() - self.started

    def reset(self) -> None:
        self.depth = 0
        self.seconds = 0.0


class _EventTimer:
    """The same on CUDA with events: each hook records an event on the stream, nothing waits,
    so the forward runs as unserialised as in the gate's rounds; the elapsed times are read
    once the forward is done."""

    def __init__(self) -> None:
        self.depth = 0
        self.spans: list[list[Any]] = []

    def enter(self, module: torch.nn.Module, args: Any) -> None:
        if self.depth == 0:
            self.spans.append([_event(), None])
        self.depth += 1

    def leave(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.spans[-1][1] = _event()

    def reset(self) -> None:
        self.depth = 0
        self.spans = []

    @property
    def seconds(self) -> float:
        torch.cuda.synchronize()
        return sum(start.elapsed_time(end) for start, end in self.spans if end) / 1e3


def _event() -> Any:
    event = torch.cuda.Event(enable_timing=True)
    event.record()
    return event


def _no_sync() -> None:
    return None


def measure_headroom(
    model: str,
    layers: Sequence[torch.nn.Module],
    run_forward: Callable[[], object],
    *,
    repeats: int = 3,
    sync: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    cuda_events: bool = False,
) -> Headroom:
    """Time `run_forward` whole and inside `layers`; the share is the median over `repeats`.

    One untimed warm-up call comes first. `sync` (e.g. `torch.cuda.synchronize`) is called
    before every clock reading, so queued GPU work is charged to the right side. `clock` reads
    the time, as the gate's rounds do (the timing thread's CPU time on one CPU thread). The
    hooks are removed before returning, also when `run_forward` raises. `cuda_events`: time
    with CUDA events instead (no synchronize in the hooks, which would serialise the forward).
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a whole number >= 1, got {repeats!r}")
    unique = list({id(layer): layer for layer in layers}.values())
    if not unique:
        return Headroom(model=model, share=0.0, layers=0)
    for layer in unique:
        if not isinstance(layer, torch.nn.Module):
            raise TypeError(f"layers must be torch.nn.Module objects, got {type(layer).__name__}")
    sync = sync or _no_sync
    timer: _InsideTimer | _EventTimer = _EventTimer() if cuda_events else _InsideTimer(sync, clock)
    handles = []
    try:
        for layer in unique:
            handles.append(layer.register_forward_pre_hook(timer.enter))
            handles.append(layer.register_forward_hook(timer.leave, always_call=True))
        run_forward()
        shares = []
        for _ in range(repeats):
            timer.reset()
            if cuda_events:
                whole = _EventTimer()
                whole.enter(None, None)  # type: ignore[arg-type]
                run_forward()
                whole.leave(None, None, None)  # type: ignore[arg-type]
                total = whole.seconds
            else:
                sync()
                start = clock()
                run_forward()
                sync()
                total = clock() - start
            shares.append(min(timer.seconds / total, 1.0) if total > 0 else 0.0)
    finally:
        for handle in handles:
            handle.remove()
    return Headroom(model=model, share=statistics.median(shares), layers=len(unique))


def model_headroom(
    model: str,
    pipe: Any,
    device: torch.device,
    repeats: int,
    threads: int | None = None,
    cpu_clock: bool = False,
) -> Headroom:
    """The headroom of `pipe`'s denoiser: the layers ToMe merges at ratio 0.5, timed inside one
    denoiser forward (none when ToMe does not apply), with the gate's timing policy: torch
    on `threads` intra-op threads, and the thread's CPU clock when `cpu_clock`, so that the
    bound is measured as the speedup it bounds."""
    from pytest_tome.engine import TomeNotApplicable, apply_tome
    from pytest_tome.gate.measure.clocks import synchronizer, torch_threads
    from pytest_tome.gate.measure.pipeline_calls import denoiser_forward, merged_parts
    from pytest_tome.gate.measure.plan import TOME_ARGS

    try:
        patch = apply_tome(pipe, 0.5, **TOME_ARGS)
        layers = merged_parts(patch)
        patch.remove()
    except TomeNotApplicable:
        layers = []
    clock = time.thread_time if cpu_clock else time.perf_counter
    with torch_threads(threads):
        return measure_headroom(
            model,
            layers,
            denoiser_forward(pipe),
            repeats=repeats,
            sync=synchronizer(device),
            clock=clock,
            cuda_events=device.type == "cuda",
        )
