"""A saving run stores only measurements that pass their own checks: a failing one (merged
images identical to float noise, an interval too short to compare with) fails the test and
writes nothing; a good one says `new` on every row it measured."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_tome.gate.decide.admission import rounds_for, save_problems, short_interval
from pytest_tome.gate.decide.advice import inconclusive_advice
from pytest_tome.gate.decide.tolerances import Tolerances
from pytest_tome.gate.decide.verdicts import decide
from pytest_tome.gate.results import FAIL, RatioResult
from pytest_tome.gate.store.baselines import BaselineEntry, save_entries

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

GATE_TEST = """
def test_gate(tome_gate, tome_ratio):
    tome_gate(tome_ratio)
"""
# Merged images that differ from the unmerged ones by float noise only, as a GPU's
# summation order gives: PSNR 95 dB at ratio 0.5, a failure of the run's own checks.
FLOAT_NOISE = """
import pytest
import pytest_tome.gate.measure.quality as quality

@pytest.fixture(autouse=True)
def float_noise(monkeypatch):
    monkeypatch.setattr(
        quality, "image_quality",
        lambda a, b: quality.Quality(95.0, 1.0, (95.0,), (1.0,), 7),
    )
"""
FAST = (
    "--tome-models=tiny-ldm", "--tome-steps=2", "--tome-ratios=0.5", "--tome-baselines=b",
    "-p", "no:randomly", "-p", "no:cacheprovider",
)  # fmt: skip
STORED = Path("b") / "cpu" / "tiny-ldm.json"


def steady(rounds: int, **changes) -> RatioResult:
    return RatioResult(
        "tiny-ldm", 0.5, "cpu", time_base=(1.0,) * rounds, time_tome=(0.5,) * rounds, **changes
    )


def test_a_saving_run_never_stores_a_measurement_that_fails_its_own_checks(pytester) -> None:
    pytester.makepyfile(test_user_gate=GATE_TEST)
    pytester.makeconftest(FLOAT_NOISE)
    result = pytester.runpytest(*FAST, "--tome-rounds=6", "--tome-save-baselines")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*baseline not saved for tiny-ldm at ratio 0.5*", "*PSNR*"])
    assert not (pytester.path / STORED).exists()


def test_every_row_of_a_good_saving_run_says_new(pytester) -> None:
    pytester.makepyfile(test_user_gate=GATE_TEST)
    result = pytester.runpytest(*FAST, "--tome-rounds=6", "--tome-save-baselines", "-rA")
    result.assert_outcomes(passed=1)
    assert (pytester.path / STORED).exists()
    row = next(line for line in result.outlines if line.lstrip().startswith("0.5 "))
    assert row.rstrip().endswith("new") and "fail" not in row, row


def test_a_two_round_baseline_gets_the_rounds_a_95_percent_interval_needs(pytester) -> None:
    """--tome-rounds=2 used to store a 50% interval without a word, and an unchanged rerun
    then read as inconclusive. The saving run adds rounds up to six; capped below that by
    --tome-max-rounds, it saves with a warning that says what to do."""
    import json

    pytester.makepyfile(test_user_gate=GATE_TEST)
    capped = pytester.runpytest(
        *FAST, "--tome-rounds=2", "--tome-max-rounds=2", "--tome-save-baselines"
    )
    capped.assert_outcomes(passed=1)
    capped.stdout.fnmatch_lines(["WARNING: *saved with 2 rounds: a 50% interval*--tome-rounds=6*"])
    assert len(json.loads((pytester.path / STORED).read_text())["entries"]["0.5"]["time_tome"]) == 2
    (pytester.path / STORED).unlink()
    grown = pytester.runpytest(*FAST, "--tome-rounds=2", "--tome-save-baselines")
    grown.assert_outcomes(passed=1)
    assert "WARNING" not in grown.stdout.str()
    entry = json.loads((pytester.path / STORED).read_text())["entries"]["0.5"]
    assert len(entry["time_tome"]) >= rounds_for() == 6


def test_save_problems_are_the_failed_checks_and_a_short_interval_warns() -> None:
    tol = Tolerances()
    good = steady(6, psnr=30.0, ssim=0.9)
    assert save_problems(decide(good, None, tol, quality_applies=True)) == ()
    assert short_interval(good) is None
    noise = steady(6, psnr=95.0, ssim=1.0)
    problems = save_problems(decide(noise, None, tol, quality_applies=True))
    assert any(p.startswith("PSNR:") for p in problems), problems
    assert "3 rounds: a 75% interval" in short_interval(steady(3))


def test_the_store_refuses_a_failed_measurement(tmp_path) -> None:
    failed = BaselineEntry(steady(6, verdict=FAIL), {"model": "tiny-ldm"})
    with pytest.raises(ValueError, match="verdict is 'fail' is never stored"):
        save_entries(tmp_path, "cpu", "tiny-ldm", [failed])
    assert not any(tmp_path.rglob("*.json"))


@pytest.mark.parametrize(("threads", "advised"), [(1, False), (None, True), (4, True)])
def test_inconclusive_advice_suggests_one_thread_only_when_not_already_used(threads, advised):
    assert ("--tome-threads=1" in inconclusive_advice(threads)) is advised


def test_inconclusive_advice_names_a_baseline_with_too_few_rounds() -> None:
    assert "re-save the baseline" not in inconclusive_advice(1, 8)
    advice = inconclusive_advice(1, 2)
    assert advice.startswith("Re-save the baseline with --tome-rounds=6 or more (it has 2 rounds")
