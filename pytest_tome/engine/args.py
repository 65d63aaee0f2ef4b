"""The arguments of `apply_tome`, checked once, with errors that name the bad value."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from pytest_tome.engine.layers import BACKEND_OURS, BACKEND_TOMESD
from pytest_tome.methods import METHOD_TODO, METHOD_TOME, METHODS, todo_factor

__all__ = ["METHODS", "METHOD_TODO", "METHOD_TOME", "TomeArgs", "TomeNotApplicable", "max_ratio"]


class TomeNotApplicable(Exception):
    """ToMe with ratio > 0 would merge no token anywhere in the model; the message says why."""


def check_int(name: str, value: Any, *, minimum: int) -> None:
    """ValueError naming `name` unless `value` is an integer (not a bool) >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def max_ratio(sx: int, sy: int) -> float:
    """The highest ratio strides sx, sy allow: every token but one per sy x sx cell merged."""
    check_int("sx", sx, minimum=1)
    check_int("sy", sy, minimum=1)
    return 1.0 - 1.0 / (sx * sy)


@dataclass(frozen=True)
class TomeArgs:
    """The arguments of `apply_tome`, validated (tomesd's meaning for each)."""

    ratio: float
    sx: int = 2
    sy: int = 2
    # None: the finest level that has attention (ToMe's intent: merge where tokens are most);
    # an integer: tomesd's meaning, every layer at most that many times downsampled from the
    # model's input.
    max_downsample: int | None = None
    use_rand: bool = True
    merge_attn: bool = True
    merge_crossattn: bool = False
    merge_mlp: bool = False
    seed: int | None = None
    method: str = METHOD_TOME
    # One matching per resolution per forward (faster; outputs differ slightly from tomesd's).
    share_matching: bool = True
    # Who merges SD's BasicTransformerBlocks: our processor, or tomesd itself (the reference).
    backend: str = BACKEND_OURS

    def __post_init__(self) -> None:
        check_int("sx", self.sx, minimum=1)
        check_int("sy", self.sy, minimum=1)
        if self.max_downsample is not None:
            check_int("max_downsample", self.max_downsample, minimum=1)
        if self.seed is not None:
            check_int("seed", self.seed, minimum=0)
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.backend not in (BACKEND_TOMESD, BACKEND_OURS):
            raise ValueError(
                f"backend must be {BACKEND_TOMESD!r} or {BACKEND_OURS!r}, got {self.backend!r}"
            )
        for flag in ("use_rand", "merge_attn", "merge_crossattn", "merge_mlp", "share_matching"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be True or False, got {getattr(self, flag)!r}")
        ratio = self.ratio
        if self.method == METHOD_TODO:
            todo_factor(ratio)  # a ValueError naming the ratios ToDo can realise
            object.__setattr__(self, "ratio", float(ratio))
            object.__setattr__(self, "backend", BACKEND_OURS)  # tomesd has no ToDo
            return
        if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or math.isnan(ratio):
            raise ValueError(f"ratio must be a number between 0 and 1, got {ratio!r}")
        limit = max_ratio(self.sx, self.sy)
        if ratio < 0 or ratio > limit:
            raise ValueError(
                f"ratio must be between 0 and {limit:g} for sx={self.sx}, sy={self.sy} "
                f"(1 - 1/(sx*sy): one token per cell is kept), got {ratio!r}"
            )
        object.__setattr__(self, "ratio", float(ratio))
