"""The command that saves a missing baseline for one gate test, with the run's settings."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from pytest_tome.gate.store.fingerprints import MEASURED_WITH, TIMED_WITH
from pytest_tome.methods import METHOD_TOME
from pytest_tome.models.spec import ModelSpec


def save_command(
    nodeid: str, spec: ModelSpec, ratio: float, settings: Any, method: str = METHOD_TOME
) -> str:
    """The command that writes the missing baseline for one test, with the run's settings."""
    words = [f"pytest '{nodeid}'", f"--tome-models={spec.name}", f"--tome-ratios={ratio:g}"]
    if method != METHOD_TOME:
        words.append(f"--tome-methods={method}")
    defaults = type(settings)()
    # Every fingerprinted setting (so the saved baseline matches this run), and the rounds.
    for name in (*MEASURED_WITH, *TIMED_WITH, "rounds", "warmup"):
        if getattr(settings, name) != getattr(defaults, name):
            words.append(f"--tome-{name}={_option_text(getattr(settings, name))}")
    if settings.device != "cpu":
        words.append(f"--tome-device={settings.device}")
    folder = Path(settings.baselines)
    if folder.resolve() != (Path.cwd() / "baselines").resolve():  # not the default from here
        words.append("--tome-baselines=" + shlex.quote(os.path.relpath(folder)))
    return " ".join([*words, "--tome-save-baselines"])


def _option_text(value: Any) -> str:
    """A setting as its option spells it: None (threads: torch's own count) is `auto`."""
    return "auto" if value is None else str(value)
