"""The speed call: is this run's speedup worse than the baseline's, fine, or undecidable?

A slowdown fails when it is significant and beyond the tolerance. It passes when it is not,
and the run's per-round speedups are significantly above the baseline's shrunk by the
tolerance (a one-sided Mann-Whitney U test at EQUIVALENCE_ALPHA): a loss beyond the tolerance
is then ruled out. Otherwise the call is *inconclusive*: such a loss could hide in the noise.
The gate adds rounds while a call is undecided (`speed_undecided`).
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
    significance: Any  # stats.Significance of a slowdown
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
    from pytest_tome.gate.stats import paired_ratios, paired_speedup, significantly_worse

    base_ratios = paired_ratios(baseline.time_base, baseline.time_tome)
    base = paired_speedup(baseline.time_base, baseline.time_tome).median
    current = paired_speedup(time_base, time_tome)
    shrunk = [ratio / (1 + tol.speed) for ratio in base_ratios]
    return SpeedCall(
        slower=base / current.median - 1,
        tolerance=tol.speed,
        threshold=base / (1 + tol.speed),
        low=current.ci[0],
        significance=significantly_worse(
            base_ratios, current.ratios, worse="lower", alpha=tol.alpha
        ),
        within=significantly_worse(shrunk, current.ratios, worse="higher", alpha=EQUIVALENCE_ALPHA),
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
