"""pytest-tome's coupling to pytest-benchmark: the version floor that `pedantic(teardown=)`
needs, and gate tests kept under --benchmark-only by when a skip mark came, not its text.
tox's `bench-floor` env runs this file against the floor version."""

from __future__ import annotations

import inspect
import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.version import Version
from pytest_benchmark.fixture import BenchmarkFixture

ROOT = Path(__file__).parent.parent
FLOOR = Version("5.2")  # 5.2.0 added pedantic's per-round teardown, which the gate times with

TESTS = """
import pytest

def test_gate(tome_gate):
    pass

@pytest.mark.skip(reason="the user's own: not with --benchmark-only")
def test_gate_skipped_by_its_author(tome_gate):
    pass

def test_plain():
    pass
"""


def _declared_floor() -> Version:
    (floor,) = re.findall(r'"pytest-benchmark>=([0-9.]+)"', (ROOT / "pyproject.toml").read_text())
    return Version(floor)


def test_the_declared_floor_has_pedantic_teardown() -> None:
    assert _declared_floor() >= FLOOR
    assert "teardown" in inspect.signature(BenchmarkFixture.pedantic).parameters
    assert Version(metadata.version("pytest-benchmark")) >= _declared_floor()


def test_tox_tests_the_floor() -> None:
    tox = (ROOT / "tox.ini").read_text()
    pins = re.findall(r"pytest-benchmark==([0-9.]+)", tox)
    assert [Version(pin) for pin in pins] == [_declared_floor()], pins
    assert "bench-floor" in re.search(r"envlist = (.*)", tox).group(1)


def test_benchmark_only_runs_gates_and_keeps_every_skip_mark_of_their_own(pytester) -> None:
    """pytest-benchmark's skip (added during collection) is taken off a gate test; a skip its
    author wrote stays, even one that mentions --benchmark-only (matching on the text, as
    before, ran that test)."""
    pytester.makepyfile(test_user=TESTS)
    result = pytester.runpytest(
        "--benchmark-only", "--tome-models=tiny-ldm", "-p", "no:randomly", "-rs"
    )
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(
        [
            "*test_user.py:*the user's own: not with --benchmark-only*",
            "*Skipping non-benchmark (--benchmark-only active)*",
        ]
    )


@pytest.mark.parametrize("option", ["--benchmark-skip", "--benchmark-disable"])
def test_gates_run_under_the_other_benchmark_options(pytester, option) -> None:
    pytester.makepyfile(test_user=TESTS)
    result = pytester.runpytest(option, "--tome-models=tiny-ldm", "-p", "no:randomly")
    result.assert_outcomes(passed=2, skipped=1)
