"""Progress lines for long measurements, through pytest's terminal writer.

Quiet (`-q`) runs and xdist workers show nothing; verbose runs show every round; normal runs
only once a test has been measuring for a while (an `arch:sd15-512` sweep on a CPU takes
minutes per test). Lines are written with output capture suspended, as live logging does.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

QUIET_FOR_S = 10.0  # in normal verbosity, say nothing for tests shorter than this


def progress_writer(config: pytest.Config) -> Callable[[str], None]:
    """A function that shows one progress line, or does nothing where that would disturb."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    verbosity = config.get_verbosity()
    if reporter is None or verbosity < 0 or hasattr(config, "workerinput"):
        return lambda message: None
    capture = config.pluginmanager.get_plugin("capturemanager")
    started = time.monotonic()

    def write(message: str) -> None:
        if verbosity < 1 and time.monotonic() - started < QUIET_FOR_S:
            return
        if capture is None:
            reporter.write_line(f"[tome] {message}")
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"[tome] {message}")

    return write
