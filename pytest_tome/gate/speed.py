"""The speed call: is this run's speedup worse than the baseline's, fine, or undecidable?

The tolerance draws one line, the threshold: the baseline's median speedup / (1 + tolerance).
- fail: the slowdown is significant (a one-sided Mann-Whitney U test of this run's per-round
  speedups against the baseline's, at the tolerances' alpha, 0.01 by default) *and* the median
  lies below the line;
- pass: the per-round speedups lie significantly above the line (a one-sided sign test at
  EQUIVALENCE_ALPHA, as in an equivalence test): a loss beyond the tolerance is ruled out;
- otherwise *inconclusive*: such a loss could hide in the noise.
The gate adds rounds while a call is undecided (`speed_undecided`).

The pass test takes the baseline's median as a fixed reference rather than as a second noisy
sample: a saving run adds rounds until its own interval lies within the tolerance, and testing
this run alone against the line keeps a noisy baseline from making every later run undecidable
(two noisy samples need a shift of about 1.4 times the noise to tell apart; one sample and a
line, about one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# The level at which a loss beyond the tolerance counts as ruled out, as in an equivalence
# test (TOST); looser than the 1% that a failure needs, since this decides only whether the
# gate could see, and a wrong "could see" needs a loss the tolerance calls large.
EQUIVALENCE_ALPHA = 0.05

if TYPE_CHECKING:
    from pytest_tome.gate.results import RatioResult
    from pytest_tome.gate.verdicts import Tolerances


def coverage_text(confidence: float) -> str:
    """' 97%' after an interval whose real coverage is not the 95% its column promises."""
    return "" if abs(confidence - 0.95) < 0.005 else f" {confidence:.0%}"


@dataclass(frozen=True)
class SpeedCall:
    """The speed comparison of one run with its baseline, before it becomes a row."""

    slower: float  # the share of the baseline's median speedup lost (negative: faster)
    tolerance: float
    threshold: float  # the lowest speedup that passes: baseline median / (1 + tolerance)
    low: float  # the lower end of the current median's interval
    significance: Any  # stats.Significance of a slowdown against the baseline's rounds
    within: Any  # stats.Significance of "above the threshold": a large loss ruled out

    @property
    def failed(self) -> bool:
        return bool(self.significance.significant) and self.slower > self.tolerance

    @property
    def inconclusive(self) -> bool:
        """Neither a significant slowdown nor significantly above the threshold: a loss
        beyond the tolerance may hide in the noise, so neither pass nor fail can be said."""
        return not self.significance.significant and not self.within.significant


def speed_call(
    time_base: tuple[float, ...],
    time_tome: tuple[float, ...],
    baseline: RatioResult,
    tol: Tolerances,
) -> SpeedCall:
    """Compare this run's paired speedups with the baseline's (see `SpeedCall`)."""
    from pytest_tome.gate.stats import median_beyond, paired_speedup, significantly_worse

    base_speedup = paired_speedup(baseline.time_base, baseline.time_tome)
    base = base_speedup.median
    current = paired_speedup(time_base, time_tome)
    threshold = base / (1 + tol.speed)
    return SpeedCall(
        slower=base / current.median - 1,
        tolerance=tol.speed,
        threshold=threshold,
        low=current.ci[0],
        significance=significantly_worse(
            base_speedup.ratios, current.ratios, worse="lower", alpha=tol.alpha
        ),
        within=median_beyond(current.ratios, threshold, side="above", alpha=EQUIVALENCE_ALPHA),
    )


def speed_undecided(
    time_base: tuple[float, ...],
    time_tome: tuple[float, ...],
    baseline: RatioResult | None,
    tol: Tolerances,
) -> bool:
    """Whether more rounds are needed: against a baseline, the call would be inconclusive;
    without one (saving), the interval reaches farther below the median than the tolerance."""
    from pytest_tome.gate.stats import paired_speedup

    if len(time_base) < 2:
        return True
    if baseline is None or not baseline.time_tome:
        current = paired_speedup(time_base, time_tome)
        return current.ci[0] < current.median / (1 + tol.speed)
    return speed_call(time_base, time_tome, baseline, tol).inconclusive
