"""The `inconclusive` verdict: noise too wide to tell a pass from a fail is never a pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_tome.gate.decide.speed import speed_undecided
from pytest_tome.gate.decide.tolerances import Tolerances
from pytest_tome.gate.decide.verdicts import decide
from pytest_tome.gate.results import FAIL, INCONCLUSIVE, PASS, RatioResult
from pytest_tome.gate.store.baselines import read_baselines

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def baseline() -> RatioResult:
    return read_baselines(DATA / "baselines" / "cpu" / "tiny-sd.json")["0.5"].result


def run(name: str) -> RatioResult:
    doc = json.loads((DATA / "runs" / f"{name}.json").read_text(encoding="utf-8"))
    return RatioResult.from_dict(doc["result"])


def test_a_wide_interval_below_the_tolerance_band_is_inconclusive_with_its_noise(baseline):
    decision = decide(run("slower_15_noisy"), baseline, Tolerances(), quality_applies=True)
    assert decision.verdict == INCONCLUSIVE
    row = next(row for row in decision.rows if row.metric == "speedup")
    assert row.status == INCONCLUSIVE
    assert "too noisy to decide" in row.why
    assert "below the 1.29x that 10% slower allows is not ruled out" in row.why
    assert "a pass needs the lower bound above 1.30x, the baseline's upper bound" in row.why
    assert "median bounds [1.05x, 1.80x] after 7 rounds" in row.why


def test_the_same_noise_passes_when_the_tolerance_band_covers_it(baseline):
    wide = Tolerances(speed=0.9)  # passes down to 1.42 / 1.9 = 0.75x, below the interval
    decision = decide(run("slower_15_noisy"), baseline, wide, quality_applies=True)
    assert decision.verdict == PASS


def test_a_median_that_looks_fine_is_still_inconclusive_when_the_scatter_hides_a_loss(baseline):
    # Rounds scattered widely around the baseline's own speedup (1.42x): the median is fine,
    # but so many rounds lie below 1.42 / 1.1 that a loss beyond 10% is not ruled out.
    base = (1.0,) * 7
    speedups = (1.42, 1.10, 1.75, 1.05, 1.60, 1.20, 1.45)
    current = RatioResult(
        "tiny-sd", 0.5, "cpu", time_base=base, time_tome=tuple(1 / s for s in speedups)
    )
    decision = decide(current, baseline, Tolerances(), quality_applies=False)
    assert decision.verdict == INCONCLUSIVE, decision.table


def test_one_disturbed_round_costs_two_more_rounds_not_the_verdict(baseline):
    """Seven rounds, one disturbed: the sign test cannot rule out a loss yet (6 of 7 above the
    line). At eight it can (7 of 8), but the median's 95% interval is still (min, max), down
    to the disturbed round; from nine rounds on the interval drops the extremes."""
    speedups = [1.42, 1.45, 0.80, 1.40, 1.43, 1.44, 1.41]
    tol = Tolerances()

    def rounds(values: list[float]) -> RatioResult:
        time_tome = tuple(1 / s for s in values)
        return RatioResult(
            "tiny-sd", 0.5, "cpu", time_base=(1.0,) * len(values), time_tome=time_tome
        )

    for n_more in (0, 1):
        run = rounds(speedups + [1.42] * n_more)
        assert speed_undecided(run.time_base, run.time_tome, baseline, tol), n_more
    settled = rounds(speedups + [1.42, 1.42])
    assert not speed_undecided(settled.time_base, settled.time_tome, baseline, tol)
    assert decide(settled, baseline, tol, quality_applies=False).verdict == PASS


def test_a_noisy_baseline_cannot_rule_out_a_loss_and_says_what_a_pass_needs():
    """Measured beside a busy neighbour: the baseline's rounds scattered from 1.19x to 1.56x,
    this run's lay within [1.19, 1.27]. Against the baseline's median / 1.1 (1.18x) the run
    looks fine, but the baseline's own median may be as high as its upper bound (1.38x): a
    loss beyond 10% is not ruled out, and a quieter baseline is what it takes."""
    noisy = (1.29, 1.19, 1.56, 1.21, 1.45, 1.24, 1.33, 1.50, 1.20, 1.38, 1.27, 1.30)
    steady = (1.22, 1.19, 1.24, 1.21, 1.27, 1.23, 1.20, 1.22)
    baseline = RatioResult(
        "tiny-sd", 0.3, "cpu", time_base=(1.0,) * 12, time_tome=tuple(1 / s for s in noisy)
    )
    current = RatioResult(
        "tiny-sd", 0.3, "cpu", time_base=(1.0,) * 8, time_tome=tuple(1 / s for s in steady)
    )
    decision = decide(current, baseline, Tolerances(), quality_applies=False)
    assert decision.verdict == INCONCLUSIVE, decision.table
    why = decision.rows[0].why
    assert "a pass needs the lower bound above 1.25x, the baseline's upper bound" in why
    assert "not ruled out" in why


def test_clear_passes_and_clear_fails_are_decided(baseline):
    for name, verdict in (("no_change", PASS), ("slower_25", FAIL), ("slower_3_significant", PASS)):
        assert decide(run(name), baseline, Tolerances(), quality_applies=True).verdict == verdict


def test_more_rounds_are_wanted_exactly_while_undecided(baseline):
    noisy, quiet = run("slower_15_noisy"), run("no_change")
    tol = Tolerances()
    assert speed_undecided(noisy.time_base, noisy.time_tome, baseline, tol)
    assert not speed_undecided(quiet.time_base, quiet.time_tome, baseline, tol)
    slow = run("slower_25")
    assert not speed_undecided(slow.time_base, slow.time_tome, baseline, tol)  # a clear fail
    # Saving: no baseline, so the run's own interval must fit in the tolerance band.
    assert speed_undecided(noisy.time_base, noisy.time_tome, None, tol)
    assert not speed_undecided(quiet.time_base, quiet.time_tome, None, tol)


def test_reports_count_and_mark_inconclusive_as_its_own_verdict(baseline):
    from pytest_tome.report.summary import report_markdown, summary_lines, verdict_counts

    noisy = decide(run("slower_15_noisy"), baseline, Tolerances(), quality_applies=True)
    result = RatioResult.from_dict(
        {**run("slower_15_noisy").to_dict(), "verdict": noisy.verdict, "reasons": noisy.reasons}
    )
    assert verdict_counts([result, baseline]) == {INCONCLUSIVE: 1, "new": 1}
    assert any(line.rstrip().endswith(INCONCLUSIVE) for line in summary_lines([result], []))
    markdown = report_markdown([result], [], {})
    assert f"**{INCONCLUSIVE}**" in markdown
