"""`--tome-methods`: ids, validation, tome_generate(method=...), and a ToDo baseline of its own."""

from __future__ import annotations

import json

import pytest

from pytest_tome.gate.store.baselines import _key_order, ratio_key
from pytest_tome.methods import METHODS
from pytest_tome.options import parse_methods

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PAIR_TEST = """
def test_pair(tome_model, tome_method, tome_ratio):
    assert tome_method in ("tome", "todo")

def test_gate_ids(tome_gate, tome_ratio):
    pass
"""
FAST = ("--tome-models=tiny-ldm", "--tome-steps=2", "-p", "no:randomly", "-p", "no:cacheprovider")


def test_default_keeps_the_ids_without_a_method(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PAIR_TEST)
    result = pytester.runpytest("--collect-only", "-q", "--tome-models=tiny-sd")
    result.stdout.fnmatch_lines(
        ["*test_pair[[]tiny-sd-r0.5[]]", "*test_gate_ids[[]tiny-sd-r0.5[]]", "2 tests collected*"]
    )


def test_todo_ids_name_the_method_and_keep_only_its_ratios(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PAIR_TEST)
    result = pytester.runpytest(
        "--collect-only", "-q", "--tome-models=tiny-sd", "--tome-methods=tome,todo",
        "--tome-ratios=0.5,0.75",
    )  # fmt: skip
    result.stdout.fnmatch_lines(
        [
            "*test_pair[[]tiny-sd-r0.5[]]",
            "*test_pair[[]tiny-sd-r0.75[]]",
            "*test_pair[[]tiny-sd-todo-r0.75[]]",
            "*test_gate_ids[[]tiny-sd-todo-r0.75[]]",
            "6 tests collected*",
        ]
    )
    assert "todo-r0.5" not in result.stdout.str()


def test_ini_key_sets_the_methods(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntome_methods = todo\ntome_ratios = 0.75\n")
    pytester.makepyfile(PAIR_TEST)
    result = pytester.runpytest("--collect-only", "-q", "--tome-models=tiny-ddpm")
    result.stdout.fnmatch_lines(["*test_pair[[]tiny-ddpm-todo-r0.75[]]", "2 tests collected*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tome-methods=tome,tomo"], "*method 'tomo'*is not one of tome, todo*"),
        (
            ["--tome-methods=todo", "--tome-ratios=0.3,0.5"],
            "*--tome-methods=todo: none of --tome-ratios=0.3,0.5*0.75 (2x2)*",
        ),
    ],
)
def test_bad_methods_are_usage_errors(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    pytester.makepyfile(PAIR_TEST)
    result = pytester.runpytest("--collect-only", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_parse_methods() -> None:
    assert parse_methods("todo, tome,todo") == ("todo", "tome")
    assert set(METHODS) == {"tome", "todo"}


def test_baseline_keys_keep_methods_apart() -> None:
    assert ratio_key(0.5) == "0.5"
    assert ratio_key(0.75, "todo") == "todo-r0.75"
    keys = ["todo-r0.9375", "0.75", "todo-r0.75", "0.3"]
    assert sorted(keys, key=_key_order) == ["0.3", "0.75", "todo-r0.75", "todo-r0.9375"]


GENERATE_TEST = """
import numpy as np

def test_todo_images(tome_generate):
    base = tome_generate(0)
    todo = tome_generate(0.75, method="todo")
    assert todo.shape == base.shape
    assert not np.array_equal(todo, base)
    assert np.array_equal(tome_generate(0, method="todo"), base)

def test_todo_bad_ratio(tome_generate):
    tome_generate(0.5, method="todo")
"""


def test_tome_generate_takes_a_method(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(GENERATE_TEST)
    result = pytester.runpytest(*FAST, "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*ToDo ratio must be one of 0, 0.75 (2x2)*got 0.5"])


GATE_TEST = """
def test_gate(tome_gate, tome_ratio):
    tome_gate(tome_ratio)
"""


@pytest.mark.slow
def test_todo_gate_saves_and_reads_its_own_baseline_entry(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(GATE_TEST)
    run = (*FAST, "--tome-methods=tome,todo", "--tome-ratios=0.5,0.75", "--tome-rounds=2",
           "--tome-warmup=0", "--tome-tol-speed=90%")  # fmt: skip
    saved = pytester.runpytest(*run, "--tome-save-baselines")
    saved.assert_outcomes(passed=3)
    (path,) = (pytester.path / "baselines").rglob("tiny-ldm*.json")
    entries = json.loads(path.read_text())["entries"]
    assert list(entries) == ["0.5", "0.75", "todo-r0.75"]
    assert entries["todo-r0.75"]["method"] == "todo"
    assert entries["todo-r0.75"]["fingerprint"]["tome"]["method"] == "todo"
    assert entries["0.75"]["psnr"] != entries["todo-r0.75"]["psnr"]
    result = pytester.runpytest(*run, "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*test_gate[[]tiny-ldm-todo-r0.75[]] PASSED*"])


def test_report_rows_and_plot_series_keep_methods_apart() -> None:
    from pytest_tome.gate.results import RatioResult
    from pytest_tome.report.plots import _groups
    from pytest_tome.report.summary import summary_lines

    rows = [
        RatioResult("m", 0.75, "cpu", (1.0, 1.0), (0.5, 0.6), speedup=1.8, method=method)
        for method in ("todo", "tome")
    ]
    lines = summary_lines(rows, [])
    todo = next(i for i, line in enumerate(lines) if line.lstrip().startswith("todo 0.75"))
    tome = next(i for i, line in enumerate(lines) if line.lstrip().startswith("0.75"))
    assert tome < todo  # ToMe's rows first, each method on its own rows
    assert set(_groups(rows)) == {"m", "m (todo)"}


def test_gate_reports_a_ratio_todo_cannot_realise_as_not_mergeable(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile("def test_gate(tome_gate):\n    tome_gate(0.5, method='todo')\n")
    result = pytester.runpytest(*FAST, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*ToDo at ratio 0.5 is not mergeable*only 0, 0.75 (2x2)*"])
