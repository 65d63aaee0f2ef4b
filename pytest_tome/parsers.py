"""The parsers of the `--tome-*` options and the tables of their valid values.

Each parser takes the text a user typed (command line or ini file) and raises
``argparse.ArgumentTypeError`` naming the bad value and the valid ones.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from decimal import Decimal, InvalidOperation, localcontext

from pytest_tome.methods import METHODS

SWEEP = tuple(round(0.1 * i, 1) for i in range(1, 10))  # the thesis's ratios 0.1 .. 0.9
# More ratios than this is a typo (a step of 1e-9), not a sweep: each ratio is a timed test.
MAX_RATIOS = 100
DTYPES = ("float32", "float16", "bfloat16")
INCONCLUSIVE_POLICIES = ("fail", "warn")
CLOCKS = ("auto", "wall", "cpu")
THREADS_AUTO = "auto"  # --tome-threads=auto: None, torch's own count or an xdist worker's share
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")  # cuda:N: any CUDA device index


def parse_ratios(text: str) -> tuple[float, ...]:
    """`0.3,0.5` | `sweep` | `start:stop:step` (stop included) -> ratios in [0, 1), in order."""
    text = text.strip()
    if text == "sweep":
        return SWEEP
    if ":" in text:
        return _parse_range(text)
    if not text:
        raise argparse.ArgumentTypeError(
            "empty ratio list; expected comma-separated ratios in [0, 1) such as 0.3,0.5, "
            "'sweep', or start:stop:step"
        )
    ratios: list[float] = []
    for item in text.split(","):
        ratio = _parse_ratio(item, text)
        if ratio not in ratios:
            ratios.append(ratio)
    if len(ratios) > MAX_RATIOS:
        raise argparse.ArgumentTypeError(
            f"{len(ratios)} ratios given, more than the cap of {MAX_RATIOS} "
            "(each ratio is a timed test)"
        )
    return tuple(ratios)


def _parse_ratio(item: str, whole: str) -> float:
    item = item.strip()
    if not item:
        raise argparse.ArgumentTypeError(
            f"empty entry in ratio list {whole!r}; expected comma-separated ratios in [0, 1)"
        )
    try:
        value = Decimal(item)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(
            f"ratio {item!r} is not a number; expected ratios in [0, 1) such as 0.3,0.5"
        ) from None
    if not value.is_finite() or not 0 <= value < 1:
        raise argparse.ArgumentTypeError(
            f"ratio {item} is out of range; a merge ratio is in [0, 1) (0 = no merging)"
        )
    return float(value)


def _parse_range(text: str) -> tuple[float, ...]:
    parts = text.split(":")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(
            f"ratio range {text!r} must be start:stop:step, e.g. 0.1:0.9:0.1"
        )
    start, stop, step = (Decimal(str(_parse_ratio(p, text))) for p in parts)
    if step <= 0 or stop < start:
        raise argparse.ArgumentTypeError(
            f"ratio range {text!r} needs step > 0 and stop >= start, e.g. 0.1:0.9:0.1"
        )
    with localcontext() as exact:
        exact.prec = 400  # a step of 5e-324 (the smallest float) still counts exactly
        count = int((stop - start) // step) + 1
    if count > MAX_RATIOS:
        raise argparse.ArgumentTypeError(
            f"ratio range {text!r} gives {_count(count)} ratios, more than the cap of {MAX_RATIOS} "
            "(each ratio is a timed test); use a larger step, e.g. 0.1:0.9:0.1"
        )
    ratios = []
    value = start
    while value <= stop:
        ratios.append(float(value))
        value += step
    return tuple(ratios)


def _count(count: int) -> str:
    return str(count) if count < 10**9 else f"about {Decimal(count):.1e}"


def parse_models(text: str) -> tuple[str, ...]:
    """Comma-separated model entries; each is resolved later by `pipelines.resolve_model`."""
    entries = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in entries):
        raise argparse.ArgumentTypeError(
            f"model list {text!r} has an empty entry; expected comma-separated names such as "
            "tiny-sd,tiny-ddpm, local folders or hub ids"
        )
    return tuple(dict.fromkeys(entries))


def parse_methods(text: str) -> tuple[str, ...]:
    """Comma-separated reduction methods, each `tome` (token merging) or `todo` (downsampling)."""
    entries = [item.strip().lower() for item in text.split(",")]
    for item in entries:
        if item not in METHODS:
            raise argparse.ArgumentTypeError(
                f"method {item!r} in {text!r} is not one of {', '.join(METHODS)} "
                "(tome = token merging, todo = token downsampling of keys/values)"
            )
    return tuple(dict.fromkeys(entries))


def parse_device(text: str) -> str:
    """`auto`, `cpu`, `cuda`, `cuda:N` or `mps` (availability is checked at configure)."""
    text = text.strip().lower()
    if text in DEVICES and text != "cuda:N":
        return text
    if text.startswith("cuda:") and text[5:].isdigit():
        return text
    raise argparse.ArgumentTypeError(f"device {text!r} is not one of {', '.join(DEVICES)}")


def parse_dtype(text: str) -> str:
    text = text.strip().lower()
    if text not in DTYPES:
        raise argparse.ArgumentTypeError(f"dtype {text!r} is not one of {', '.join(DTYPES)}")
    return text


def positive_int(what: str, minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{what} {text!r} is not a whole number; expected an integer >= {minimum}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what} {value} is too small; expected >= {minimum}")
        return value

    parse.__name__ = what.replace(" ", "_")
    return parse


def parse_threads(text: str) -> int | None:
    """`auto` (None: torch's own thread count, or the xdist worker's share) or an integer >= 1.

    None is a real value here: `option_values` tells "given" from "not given" by NOT_GIVEN.
    """
    if text.strip().lower() == THREADS_AUTO:
        return None
    return positive_int("threads", 1)(text)


def path_parser(what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(
                f"empty {what} path; give a {what} such as {what}s/ or leave the option out"
            )
        return text

    parse.__name__ = f"{what}_path"
    return parse


def parse_clock(text: str) -> str:
    text = text.strip().lower()
    if text not in CLOCKS:
        raise argparse.ArgumentTypeError(
            f"clock {text!r} is not one of {', '.join(CLOCKS)} (auto: CPU time of the timing "
            "thread when timing on the CPU with one thread, else wall time)"
        )
    return text


def parse_inconclusive(text: str) -> str:
    text = text.strip().lower()
    if text not in INCONCLUSIVE_POLICIES:
        raise argparse.ArgumentTypeError(
            f"inconclusive={text!r} is not one of {', '.join(INCONCLUSIVE_POLICIES)} "
            "(fail: a verdict too noisy to decide fails the test; warn: it is noted and passes)"
        )
    return text


def tolerance_parser(metric: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        from pytest_tome.gate.decide.tolerances import parse_tolerance

        try:
            return parse_tolerance(metric, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = f"{metric}_tolerance"
    return parse
