"""Tolerances: how much worse than its baseline a metric may get, and how users write them
(a number, "10%", "1.5dB"), from options, ini keys and `@pytest.mark.tome(...)`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class Tolerances:
    """How much worse than the baseline a metric may get before the gate fails."""

    # The merged call may take this much longer, relative to the unmerged one, than in the
    # baseline: the speedup may fall to baseline / (1 + speed); 10% allows a 9.1% lower speedup.
    speed: float = 0.10
    memory: float = 0.10  # relative increase of the merged run's peak memory
    psnr: float = 1.0  # dB below the baseline
    ssim: float = 0.02  # absolute drop
    # Significance level of the one-sided test on memory (speed has its own sequential levels,
    # decide/speed.py). 0.01 rather than 0.05:
    # a gate run makes a check per model and ratio, and a false failure in any one fails it;
    # five rounds per side still reach p = 1/252 when the samples separate completely.
    alpha: float = 0.01

    def __post_init__(self) -> None:
        for name in _NAMES:  # accepts "10%" too, and stores the number
            object.__setattr__(self, name, parse_tolerance(name, getattr(self, name)))

    def with_values(self, values: Mapping[str, Any]) -> Tolerances:
        """A copy with some tolerances given as strings ("10%", "1.5") or numbers."""
        return replace(self, **{name: parse_tolerance(name, v) for name, v in values.items()})


_NAMES = tuple(f.name for f in fields(Tolerances))
_PERCENT_OK = ("speed", "memory", "alpha")


def parse_tolerance(name: str, value: Any) -> float:
    """One tolerance from a number or a string: "10%" or "0.1" (speed, memory, alpha),
    "1.5" or "1.5dB" (psnr), "0.02" (ssim). ValueError names the value and what is valid."""
    if name not in _NAMES:
        raise ValueError(f"unknown tolerance {name!r}; valid: {', '.join(_NAMES)}")
    number = _number(name, value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"tolerance {name}={value!r} must be a finite number >= 0")
    if name == "speed" and number >= 1:
        raise ValueError(
            f"tolerance speed={value!r} must lie in [0, 100%): how much longer the merged call "
            "may take (the speedup may fall to baseline / (1 + speed)), e.g. 10%"
        )
    if name == "memory" and number >= 1:
        raise ValueError(
            f"tolerance memory={value!r} must lie in [0, 100%): the share by which the merged "
            "run's peak memory may grow, e.g. 10% or 0.1 (as speed)"
        )
    if name == "ssim" and number > 1:
        raise ValueError(
            f"tolerance ssim={value!r} must lie in [0, 1]: the absolute SSIM drop allowed "
            "(SSIM is at most 1; 1 allows a drop to 0), e.g. 0.02"
        )
    if name == "alpha" and not 0 < number < 1:
        raise ValueError(f"alpha={value!r} must lie strictly between 0 and 1 (e.g. 0.05 or 5%)")
    return number


def _number(name: str, value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        message = f"tolerance {name}={value!r} must be a number or a string like '10%'"
        raise ValueError(message)  # noqa: TRY004 (callers turn ValueError into a usage error)
    text = value.strip()
    scale = 1.0
    if text.endswith("%") and name in _PERCENT_OK:
        text, scale = text[:-1], 0.01
    elif name == "psnr" and text.lower().endswith("db"):
        text = text[:-2]
    try:
        return float(text) * scale
    except ValueError:
        unit = (
            "a fraction or a percentage, e.g. 0.1 or 10%"
            if name in _PERCENT_OK
            else (
                "decibels, e.g. 1.5 or 1.5dB"
                if name == "psnr"
                else "an absolute SSIM drop, e.g. 0.02"
            )
        )
        raise ValueError(f"tolerance {name}={value!r} is not a number; expected {unit}") from None


def parse_tolerances(spec: str, base: Tolerances | None = None) -> Tolerances:
    """An option's value like "speed=10%,psnr=1.5", applied on top of `base`."""
    values: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r} is not NAME=VALUE; valid names: {', '.join(_NAMES)}")
        values[name.strip()] = value
    return (base or Tolerances()).with_values(values)


def tolerances_from_marker(
    base: Tolerances, kwargs: Mapping[str, Any], args: tuple[Any, ...]
) -> Tolerances:
    """`@pytest.mark.tome(speed="20%", psnr=2)` applied on top of `base`; keywords only."""
    if args:
        raise ValueError(
            f"tome marker takes keyword arguments only ({', '.join(_NAMES)}), got {args!r}"
        )
    return base.with_values(kwargs)
