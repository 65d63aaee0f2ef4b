"""What one measurement runs with: the input of every measure step, and the timing policy.

A RunPlan is built once per gate test from the settings and fixes everything a measurement
depends on: model, ratio, method, steps, seed, images, rounds, device, and how calls are timed
(torch threads, clock). The fingerprint (store.fingerprints) and the save command
(store.commands) are both made from it, so they always agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

# The ToMe arguments the gate measures with (tomesd's, and apply_tome's share_matching and
# backend defaults); part of every fingerprint.
TOME_ARGS: Mapping[str, Any] = MappingProxyType(
    {
        "sx": 2,
        "sy": 2,
        "max_downsample": None,  # the finest level that has attention
        "use_rand": True,
        "merge_attn": True,
        "merge_crossattn": False,
        "merge_mlp": False,
        "share_matching": True,  # apply_tome's defaults: what users get
        "backend": "pytest-tome",
    }
)

# Square cells the gate merges in: 2x2 (tomesd's) up to ratio 0.75, then the smallest that
# keeps one destination per cell, as ToDo's factors: 3x3 up to 0.889, 4x4 up to 0.9375.
TOME_CELLS = (2, 3, 4)


def tome_cell(ratio: float) -> int | None:
    """The side of the square cell the gate merges `ratio` in; None above what 4x4 allows."""
    from pytest_tome.methods import todo_ratio  # 1 - 1/k^2: the same bound for ToMe's cells

    return next((k for k in TOME_CELLS if ratio <= todo_ratio(k) + 1e-9), None)


def tome_args(ratio: float, method: str = "tome") -> Mapping[str, Any]:
    """The arguments the gate measures `ratio` with: TOME_ARGS, ToMe's in the ratio's cell
    (ToDo's cell is its own downsampling factor)."""
    if method != "tome":
        return TOME_ARGS
    cell = tome_cell(ratio) or TOME_CELLS[-1]
    return MappingProxyType({**TOME_ARGS, "sx": cell, "sy": cell})


def unmergeable(ratio: float, method: str) -> str | None:
    """Why the gate cannot measure `method` at `ratio` (the skip's reason), or None."""
    from pytest_tome.methods import realises, todo_ratio, valid_todo_ratios

    if method == "tome" and tome_cell(ratio) is None:
        most = TOME_CELLS[-1]
        return f"ratio {ratio:g} is above {todo_ratio(most):g}, the most {most}x{most} cells allow"
    if method != "tome" and not realises(method, ratio):
        return f"ToDo cannot remove {ratio:g} of the keys/values, only {valid_todo_ratios()}"
    return None


CLOCK_CPU = "cpu"  # the timing thread's CPU seconds (time.thread_time)
CLOCK_WALL = "wall"  # time.perf_counter


@dataclass(frozen=True)
class RunPlan:
    """Everything one gate measurement is run with (all plain values)."""

    model: str  # the model's name, as --tome-models spells it
    ratio: float
    method: str
    device: str  # a resolved torch device string: "cpu", "cuda:0", "mps"
    dtype: str
    steps: int
    seed: int
    images: int
    rounds: int
    warmup: int
    max_rounds: int
    # torch intra-op threads while timing on the CPU; None: torch's own count (or the GPU)
    threads: int | None
    clock: str  # CLOCK_CPU or CLOCK_WALL: what times each call

    @property
    def device_type(self) -> str:
        return self.device.split(":")[0]

    @property
    def most_rounds(self) -> int:
        return max(self.rounds, self.max_rounds)

    def timing(self, torch_threads: int) -> dict[str, Any]:
        """The thread count and clock that timed a CPU run (they move the speedup, so they
        are fingerprinted); `torch_threads` is torch's own count, for threads=None. GPU
        timings depend on neither: wall time, synced."""
        if self.device_type != "cpu":
            return {}
        return {"threads": self.threads or torch_threads, "clock": self.clock}


def run_plan(
    settings: Any, model: str, ratio: float, method: str, worker_threads: int | None = None
) -> RunPlan:
    """The plan of one gate test from `TomeSettings` (device resolved).

    `worker_threads` is an xdist worker's share of the cores: with --tome-threads=auto it
    bounds the timing threads on the CPU, only while timing (torch's count is restored after).
    """
    cpu = settings.device.split(":")[0] == "cpu"
    threads = (settings.threads or worker_threads) if cpu else None
    clock = settings.clock
    if clock == "auto":
        clock = CLOCK_CPU if cpu and settings.threads == 1 else CLOCK_WALL
    return RunPlan(
        model=model,
        ratio=ratio,
        method=method,
        device=settings.device,
        dtype=settings.dtype,
        steps=settings.steps,
        seed=settings.seed,
        images=settings.images,
        rounds=settings.rounds,
        warmup=settings.warmup,
        max_rounds=settings.max_rounds,
        threads=threads,
        clock=clock if cpu else CLOCK_WALL,
    )
