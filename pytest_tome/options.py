"""The plugin's command-line options and ini keys, declared once (`OPTIONS`).

Every option is also an ini key (``--tome-ratios`` <-> ``tome_ratios``); the command line
wins. Parsers (`pytest_tome.parsers`) raise ``argparse.ArgumentTypeError`` so argparse reports
a bad command-line value as a usage error (exit code 4); ini values go through the same
parsers. Help texts name their values from the same tables the parsers check against.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from pytest_tome.methods import METHOD_TODO, METHOD_TOME, TODO_FACTORS, todo_ratio
from pytest_tome.models.embedded import DEFAULT_MODELS, EMBEDDED
from pytest_tome.parsers import (
    CLOCKS,
    DEVICES,
    DTYPES,
    INCONCLUSIVE_POLICIES,
    MAX_RATIOS,
    SWEEP,
    THREADS_AUTO,
    parse_clock,
    parse_device,
    parse_dtype,
    parse_inconclusive,
    parse_methods,
    parse_models,
    parse_ratios,
    parse_threads,
    path_parser,
    positive_int,
    tolerance_parser,
)
from pytest_tome.settings import BASELINES_FOLDER

DEFAULT_BASELINES = f"<rootdir>/{BASELINES_FOLDER}"  # as settings.build_settings makes it


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
        f"merge ratios in [0, 1): 0.3,0.5 | sweep ({SWEEP[0]:g}..{SWEEP[-1]:g}) | "
        f"start:stop:step; at most {MAX_RATIOS}",
        "0.5",
        parse_ratios,
        "LIST",
        listed=True,
    ),
    Option(
        "methods",
        f"token reduction methods: {METHOD_TOME} (merging), {METHOD_TODO} (key/value "
        f"downsampling; ratios {', '.join(f'{todo_ratio(k):.4g}' for k in TODO_FACTORS)}), "
        "comma-separated",
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
        f"one of {', '.join(DEVICES)} (auto: CUDA when present, else cpu)",
        "auto",
        parse_device,
        "DEVICE",
    ),
    Option("dtype", f"one of {', '.join(DTYPES)}", "float32", parse_dtype, "DTYPE"),
    Option("steps", "denoising steps per image", "4", positive_int("steps", 1), "N"),
    Option("seed", "seed of every generation", "0", positive_int("seed", 0), "S"),
    Option("images", "images per generation", "1", positive_int("images", 1), "N"),
    Option(
        "rounds",
        "timed rounds per ratio (each: one unmerged and one merged run)",
        "6",
        positive_int("rounds", 2),
        "N",
    ),
    Option("warmup", "untimed warm-up rounds per ratio", "1", positive_int("warmup", 0), "N"),
    Option(
        "max-rounds",
        "rounds a ratio may grow to while its speedup is too noisy to decide",
        "20",
        positive_int("max rounds", 2),
        "N",
    ),
    Option(
        "threads",
        f"torch threads while timing on the CPU: N or {THREADS_AUTO} (torch's own count, or "
        "an xdist worker's share of the cores); 1 keeps the speedup steady beside a busy "
        "neighbour",
        "1",
        parse_threads,
        f"N|{THREADS_AUTO}",
    ),
    Option(
        "clock",
        f"what times a call, one of {', '.join(CLOCKS)} (auto: the thread's CPU time when "
        "timing on the CPU with one thread, else wall time; cpu needs --tome-threads=1)",
        "auto",
        parse_clock,
        "|".join(CLOCKS),
    ),
    Option(
        "inconclusive",
        f"what a verdict too noisy to decide does, one of {', '.join(INCONCLUSIVE_POLICIES)} "
        "(fail the test, or note it and pass)",
        "fail",
        parse_inconclusive,
        "|".join(INCONCLUSIVE_POLICIES),
    ),
    Option(
        "baselines",
        "baselines folder",
        None,
        path_parser("folder"),
        "DIR",
        default_text=DEFAULT_BASELINES,
    ),
    Option("save-baselines", "write this run's measurements into the baselines", None),
    Option(
        "report",
        "write report.json, report.md and plots into DIR",
        None,
        path_parser("folder"),
        "DIR",
    ),
    Option("tol-speed", "allowed speedup loss, e.g. 10%", "10%", tolerance_parser("speed"), "TOL"),
    Option(
        "tol-memory",
        "allowed peak-memory growth, e.g. 10%",
        "10%",
        tolerance_parser("memory"),
        "TOL",
    ),
    Option("tol-psnr", "allowed PSNR drop in dB", "1.0", tolerance_parser("psnr"), "DB"),
    Option("tol-ssim", "allowed SSIM drop (absolute)", "0.02", tolerance_parser("ssim"), "TOL"),
    # Where CI looks (pytest_tome/report/hooks.py): the trend across commits, git bisect run.
    Option(
        "history",
        "append a JSON line per gate run to FILE (--tome-report: trend.png)",
        None,
        path_parser("file"),
        "FILE",
    ),
    Option("bisect", "exit for git bisect run: 1 failed verdict, 125 cannot tell, 0 good", None),
)


# The command-line default, as None is a value (--tome-threads=auto). Not a string (argparse
# would parse it) and not object(): pytest-xdist's --looponfail ships the options to a
# subprocess, so it must survive serialization; compared with ==, not `is`.
NOT_GIVEN: Any = ("pytest-tome", "not given")


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
        if given != NOT_GIVEN:
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
