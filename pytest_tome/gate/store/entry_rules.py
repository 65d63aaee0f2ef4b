"""What each field of a stored baseline entry must hold, and the error that names a bad one."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


_SECONDS = (
    lambda v: isinstance(v, list) and bool(v) and all(_number(t) and t > 0 for t in v),
    "a non-empty list of positive seconds",
)
_BYTES = (lambda v: v is None or _count(v), "bytes (an integer >= 0) or null")
_BYTE_SAMPLES = (
    lambda v: isinstance(v, list) and all(map(_count, v)),
    "a list of bytes (integers >= 0)",
)
# Each field an entry may hold, what it must be, and how to say so.
_FIELD_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "fingerprint": (lambda v: isinstance(v, dict), "an object of settings"),
    "ratio": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "time_base": _SECONDS,
    "time_tome": _SECONDS,
    "speedup": (lambda v: v is None or (_number(v) and v > 0), "a positive number or null"),
    "speedup_ci": (
        lambda v: v is None or (isinstance(v, list) and len(v) == 2 and all(map(_number, v))),
        "two numbers or null",
    ),
    "memory_base": _BYTES,
    "memory_tome": _BYTES,
    "memory_base_samples": _BYTE_SAMPLES,
    "memory_tome_samples": _BYTE_SAMPLES,
    "memory_method": (lambda v: isinstance(v, str), "a string"),
    "psnr": (
        lambda v: v is None or v == "inf" or (_number(v) and v >= 0),
        'decibels (a number >= 0), "inf" or null',
    ),
    "ssim": (lambda v: v is None or (_number(v) and -1 <= v <= 1), "a number in [-1, 1] or null"),
    "patched_layers": (_count, "an integer >= 0"),
}


def check_fields(data: dict[str, Any]) -> None:
    """ValueError naming the first field of an entry that has the wrong type or range."""
    for name, (valid, expected) in _FIELD_RULES.items():
        if name in data and not valid(data[name]):
            shown = repr(data[name])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise ValueError(
                f"entry {data.get('ratio')!r}: field {name} is {shown}; expected {expected}"
            )
