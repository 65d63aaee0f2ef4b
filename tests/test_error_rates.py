"""The speed call's real error rates over whole simulated gate runs (seeded numpy noise shaped
like the gate's: optional stopping and the baseline's own noise included)."""

from __future__ import annotations

from pytest_tome.gate.decide.error_rates import Noise, simulate
from pytest_tome.gate.decide.tolerances import Tolerances


def test_no_change_rarely_fails_the_boundary_rarely_passes_and_a_quarter_slower_is_caught():
    tol = Tolerances()
    no_change, boundary, slower = simulate(
        [1.0, 1 + tol.speed, 1.25], trials=200, seed=3, noise=Noise(), tol=tol
    )
    assert no_change.failed <= 0.01
    assert no_change.passed >= 0.95
    assert boundary.passed <= 0.05  # exactly the tolerance: a loss not ruled out
    assert slower.failed >= 0.95


def test_noisier_rounds_cost_decisions_not_wrong_ones():
    tol = Tolerances()
    no_change, boundary = simulate(
        [1.0, 1 + tol.speed], trials=100, seed=4, noise=Noise(spread=0.04), tol=tol
    )
    assert no_change.failed <= 0.01
    assert boundary.passed <= 0.05
    assert no_change.mean_rounds > 6  # more rounds were needed to decide
