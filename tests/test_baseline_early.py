"""A baseline that cannot be used fails the gate test before the first round, not after
20 s of measuring: a corrupt file, an entry without quality, other settings."""

from __future__ import annotations

import pytest

from pytest_tome.gate.results import RatioResult
from pytest_tome.gate.store.baselines import BaselineEntry, baseline_path, save_entries

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

GATE_TEST = """
def test_gate(tome_gate, tome_ratio):
    tome_gate(tome_ratio)
"""
# Any pipeline call, timed or not, or any headroom forward, fails the test loudly.
NO_MEASURING = """
import pytest
import pytest_tome.gate.measure.pipeline_calls as calls
import pytest_tome.gate.measure.headroom as headroom

def refuse(*args, **kwargs):
    raise AssertionError("MEASURED before the baseline was checked")

@pytest.fixture(autouse=True)
def no_measuring(monkeypatch):
    monkeypatch.setattr(calls, "run_pipeline", refuse)
    monkeypatch.setattr(headroom, "model_headroom", refuse)
"""
ARGS = ("--tome-models=tiny-ldm", "--tome-steps=2", "--tome-ratios=0.5", "--tome-baselines=b",
        "-p", "no:randomly", "-p", "no:cacheprovider")  # fmt: skip


def stored(**changes) -> BaselineEntry:
    result = RatioResult("tiny-ldm", 0.5, "cpu", time_base=(1.0,) * 6, time_tome=(0.5,) * 6,
                         psnr=30.0, ssim=0.9)  # fmt: skip
    fp = {"model": "tiny-ldm", "steps": 2, "seed": 0}
    return BaselineEntry(RatioResult(**{**result.__dict__, **changes}), fp)


@pytest.mark.parametrize("problem", ["not json", "null psnr", "other settings"])
def test_a_bad_baseline_fails_before_the_first_round(pytester, problem) -> None:
    pytester.makepyfile(test_user_gate=GATE_TEST)
    pytester.makeconftest(NO_MEASURING)
    folder = pytester.path / "b"
    path = baseline_path(folder, "cpu", "tiny-ldm")
    if problem == "not json":
        path.parent.mkdir(parents=True)
        path.write_text("{not json")
        expected = f"*baseline file {path} is corrupt*"
    elif problem == "null psnr":
        save_entries(folder, "cpu", "tiny-ldm", [stored(psnr=None)])
        expected = "*entry '0.5' has psnr null*"
    else:
        save_entries(folder, "cpu", "tiny-ldm", [stored()])  # steps 2, but no versions etc.
        expected = "*was measured with different settings*"
    result = pytester.runpytest(*ARGS)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([expected])
    assert "MEASURED" not in result.stdout.str()
