"""Progress lines: each step once; normal verbosity stays quiet for short tests."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from pytest_tome import progress


class Reporter:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write_line(self, line: str) -> None:
        self.lines.append(line)


@pytest.fixture
def writer(monkeypatch: pytest.MonkeyPatch):
    """progress_writer on a stand-in config, writing into a list; `clock` drives time."""
    reporter, clock = Reporter(), [1000.0]
    plugins = {"terminalreporter": reporter, "capturemanager": None}
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])

    def make(verbosity: int):
        config = SimpleNamespace(
            pluginmanager=SimpleNamespace(get_plugin=plugins.get),
            get_verbosity=lambda: verbosity,
        )
        return progress.progress_writer(config)  # type: ignore[arg-type]

    return make, reporter.lines, clock


def test_verbose_shows_each_step_once(writer) -> None:
    make, lines, clock = writer
    write = make(1)
    for message in ("m r0.5: round 1/2 (1 s)", "m r0.5: round 2/2 (2 s)",
                    "m r0.5: peak memory (untimed) (3 s)", "m r0.5: peak memory (untimed) (4 s)"):  # fmt: skip
        write(message)
        clock[0] += 1
    assert lines == [
        "[tome] m r0.5: round 1/2 (1 s)",
        "[tome] m r0.5: round 2/2 (2 s)",
        "[tome] m r0.5: peak memory (untimed) (3 s)",
    ]


def test_normal_verbosity_waits_then_shows_a_line_every_few_seconds(writer) -> None:
    make, lines, clock = writer
    write = make(0)
    for second in range(0, 40, 2):
        clock[0] = 1000.0 + second
        write(f"m r0.5: round {second // 2 + 1}/20 ({second} s)")
    shown = [int(line.split("(")[1].split()[0]) for line in lines]
    assert shown[0] >= progress.QUIET_FOR_S
    assert all(b - a >= progress.QUIET_FOR_S for a, b in itertools.pairwise(shown))
    assert 2 <= len(shown) <= 3


def test_quiet_shows_nothing(writer) -> None:
    make, lines, clock = writer
    write = make(-1)
    clock[0] += 100
    write("m r0.5: round 1/2 (100 s)")
    assert lines == []
