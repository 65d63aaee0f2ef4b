"""The plugin's command-line options and ini keys, declared once, and their parsers.

Every option is also an ini key (``--tome-ratios`` <-> ``tome_ratios``); the command line
wins. Parsers raise ``argparse.ArgumentTypeError`` so argparse reports a bad command-line
value as a usage error (exit code 4); ini values go through the same parsers.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import pytest

from pytest_tome.methods import METHODS
from pytest_tome.models.embedded import DEFAULT_MODELS, EMBEDDED

SWEEP = tuple(round(0.1 * i, 1) for i in range(1, 10))  # the thesis's ratios 0.1 .. 0.9
# More ratios than this is a typo (a step of 1e-9), not a sweep: each ratio is a timed test.
MAX_RATIOS = 100
DTYPES = ("float32", "float16", "bfloat16")
INCONCLUSIVE_POLICIES = ("fail", "warn")
CLOCKS = ("auto", "wall", "cpu")


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
    count = int((stop - start) // step) + 1
    if count > MAX_RATIOS:
        raise argparse.ArgumentTypeError(
            f"ratio range {text!r} gives {count} ratios, more than the cap of {MAX_RATIOS} "
            "(each ratio is a timed test); use a larger step, e.g. 0.1:0.9:0.1"
        )
    ratios = []
    value = start
    while value <= stop:
        ratios.append(float(value))
        value += step
    return tuple(ratios)


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
    if text in ("auto", "cpu", "cuda", "mps"):
        return text
    if text.startswith("cuda:") and text[5:].isdigit():
        return text
    raise argparse.ArgumentTypeError(f"device {text!r} is not one of auto, cpu, cuda, cuda:N, mps")


def parse_dtype(text: str) -> str:
    text = text.strip().lower()
    if text not in DTYPES:
        raise argparse.ArgumentTypeError(f"dtype {text!r} is not one of {', '.join(DTYPES)}")
    return text


def _positive_int(what: str, minimum: int) -> Callable[[str], int]:
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
    if text.strip().lower() == "auto":
        return None
    return _positive_int("threads", 1)(text)


def _path(what: str) -> Callable[[str], str]:
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


def _tolerance(metric: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        from pytest_tome.gate.decide.tolerances import parse_tolerance

        try:
            return parse_tolerance(metric, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = f"{metric}_tolerance"
    return parse


@dataclass(frozen=True)
class Option:
    """One `--tome-*` option and its ini twin."""

    name: str  # without the leading "--tome-"
    help: str
    default: str | None  # as text, parsed like user input; None: off / not set
    parse: Callable[[str], Any] | None = None  # None for flags
    metavar: str | None = None
    default_text: str | None = None  # the help's "(default: ...)" where `default` is None
    listed: bool = False  # comma-separated; an ini file (or pyproject list) may give a list

    @property
    def default_help(self) -> str:
        return self.default_text or self.default or "off"

    @property
    def flag(self) -> str:
        return f"--tome-{self.name}"

    @property
    def dest(self) -> str:
        return "tome_" + self.name.replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option(
        "ratios",
        "merge ratios in [0, 1): 0.3,0.5 | sweep (0.1..0.9) | start:stop:step",
        "0.5",
        parse_ratios,
        "LIST",
        listed=True,
    ),
    Option(
        "methods",
        "token reduction methods: tome (merging), todo (key/value downsampling; ratios "
        "0.75, 0.889, 0.9375), comma-separated",
        "tome",
        parse_methods,
        "LIST",
        listed=True,
    ),
    Option(
        "models",
        f"pipelines: embedded names ({', '.join(EMBEDDED)}), arch: presets, "
        "local folders or hub ids, comma-separated",
        ",".join(DEFAULT_MODELS),
        parse_models,
        "LIST",
        listed=True,
    ),
    Option(
        "device",
        "auto (CUDA when present), cpu, cuda, cuda:N or mps",
        "auto",
        parse_device,
        "DEVICE",
    ),
    Option("dtype", f"one of {', '.join(DTYPES)}", "float32", parse_dtype, "DTYPE"),
    Option("steps", "denoising steps per image", "4", _positive_int("steps", 1), "N"),
    Option("seed", "seed of every generation", "0", _positive_int("seed", 0), "S"),
    Option("images", "images per generation", "1", _positive_int("images", 1), "N"),
    Option(
        "rounds",
        "timed rounds per ratio (each: one unmerged and one merged run)",
        "6",
        _positive_int("rounds", 2),
        "N",
    ),
    Option("warmup", "untimed warm-up rounds per ratio", "1", _positive_int("warmup", 0), "N"),
    Option(
        "max-rounds",
        "rounds a ratio may grow to while its speedup is too noisy to decide",
        "20",
        _positive_int("max rounds", 2),
        "N",
    ),
    Option(
        "threads",
        "torch threads while timing on the CPU: N or auto (torch's own count); 1 keeps the "
        "speedup steady beside a busy neighbour",
        "1",
        parse_threads,
        "N|auto",
    ),
    Option(
        "clock",
        "what times a call: auto (the thread's CPU time when timing on the CPU with one "
        "thread, else wall time), wall, or cpu (needs --tome-threads=1)",
        "auto",
        parse_clock,
        "auto|wall|cpu",
    ),
    Option(
        "inconclusive",
        "what a verdict too noisy to decide does: fail the test, or warn (note it and pass)",
        "fail",
        parse_inconclusive,
        "fail|warn",
    ),
    Option(
        "baselines",
        "baselines folder",
        None,
        _path("folder"),
        "DIR",
        default_text="<rootdir>/baselines",
    ),
    Option("save-baselines", "write this run's measurements into the baselines", None),
    Option(
        "report", "write report.json, report.md and plots into DIR", None, _path("folder"), "DIR"
    ),
    Option("tol-speed", "allowed speedup loss, e.g. 10%", "10%", _tolerance("speed"), "TOL"),
    Option(
        "tol-memory", "allowed peak-memory growth, e.g. 10%", "10%", _tolerance("memory"), "TOL"
    ),
    Option("tol-psnr", "allowed PSNR drop in dB", "1.0", _tolerance("psnr"), "DB"),
    Option("tol-ssim", "allowed SSIM drop (absolute)", "0.02", _tolerance("ssim"), "TOL"),
    # Where CI looks (pytest_tome/report/hooks.py): the trend across commits, git bisect run.
    Option(
        "history",
        "append a JSON line per gate run to FILE (--tome-report: trend.png)",
        None,
        _path("file"),
        "FILE",
    ),
    Option("bisect", "exit for git bisect run: 1 failed verdict, 125 cannot tell, 0 good", None),
)


NOT_GIVEN: Any = object()  # the command-line default: None is a value (--tome-threads=auto)


def add_options(parser: pytest.Parser) -> None:
    """Declare every option in one `tome` group, each with an ini key of the same name."""
    group = parser.getgroup("tome", "token merging (pytest-tome)")
    for opt in OPTIONS:
        if opt.parse is None:
            group.addoption(
                opt.flag,
                action="store_true",
                default=None,
                dest=opt.dest,
                help=opt.help.replace("%", "%%"),
            )
            parser.addini(opt.dest, f"{opt.help} (ini)", type="bool", default=False)
        else:
            group.addoption(
                opt.flag,
                action="store",
                default=NOT_GIVEN,
                dest=opt.dest,
                type=opt.parse,
                metavar=opt.metavar,
                help=f"{opt.help} (default: {opt.default_help})".replace("%", "%%"),
            )
            # "args": a pyproject list (tome_ratios = [0.3, 0.5]) arrives as a list, a line of
            # an ini file as its words; both are joined back into the comma-separated form.
            kind = "args" if opt.listed else "string"
            parser.addini(opt.dest, f"{opt.help} (ini)", type=kind, default=opt.default)


def option_values(config: pytest.Config) -> dict[str, Any]:
    """Each option's parsed value: command line, else ini, else default.

    An ini value that does not parse raises `pytest.UsageError` naming the key; an ini key
    that is present but empty is parsed too (an error where the command line's is one).
    """
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        given = config.getoption(opt.dest)
        if opt.parse is None:
            values[opt.dest] = bool(given or config.getini(opt.dest))
            continue
        if given is not NOT_GIVEN:
            values[opt.dest] = given
            continue
        ini = config.getini(opt.dest)
        if ini is None:  # no ini key, and no default: off
            values[opt.dest] = None
            continue
        text = _ini_text(ini)
        try:
            values[opt.dest] = opt.parse(text)
        except argparse.ArgumentTypeError as exc:
            raise pytest.UsageError(f"ini key {opt.dest} = {text!r}: {exc}") from None
    return values


def _ini_text(ini: Any) -> str:
    """An ini value as the command line would give it: a list becomes `a,b`."""
    if not isinstance(ini, list):
        return str(ini)
    parts = (part.strip() for item in ini for part in str(item).split(","))
    return ",".join(part for part in parts if part)
