"""Progress lines for long measurements, through pytest's terminal writer.

Quiet (`-q`) runs and xdist workers show nothing; verbose runs show each step once; normal
runs only once a test has been measuring for a while (an `arch:sd15-512` sweep on a CPU takes
minutes per test), then at most one line every QUIET_FOR_S. A step is never shown twice
(the untimed peak-memory calls report the same step). Lines are written with output capture
suspended, as live logging does.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

QUIET_FOR_S = 10.0  # in normal verbosity, say nothing for tests shorter than this
_ELAPSED = re.compile(r" \(\d+ s\)$")  # "... (12 s)": the same step at another time


def progress_writer(config: pytest.Config) -> Callable[[str], None]:
    """A function that shows one progress line, or does nothing where that would disturb."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    verbosity = config.get_verbosity()
    if reporter is None or verbosity < 0 or hasattr(config, "workerinput"):
        return lambda message: None
    capture = config.pluginmanager.get_plugin("capturemanager")
    started = time.monotonic()
    last_step, last_at = "", started - QUIET_FOR_S

    def write(message: str) -> None:
        nonlocal last_step, last_at
        now = time.monotonic()
        step = _ELAPSED.sub("", message)
        if step == last_step:
            return
        if verbosity < 1 and (now - started < QUIET_FOR_S or now - last_at < QUIET_FOR_S):
            return
        last_step, last_at = step, now
        if capture is None:
            reporter.write_line(f"[tome] {message}")
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"[tome] {message}")

    return write
