"""The speed call: is this run's speedup worse than the baseline's, fine, or undecidable?

A slowdown fails when it is significant and beyond the tolerance; it is *inconclusive* when
it is not significant yet the current median's interval reaches below the lowest speedup the
tolerance allows (baseline median / (1 + tolerance)): a loss beyond the tolerance could hide
in the noise. The gate adds rounds while a call is undecided (`speed_undecided`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
    significance: Any  # stats.Significance

    @property
    def failed(self) -> bool:
        return bool(self.significance.significant) and self.slower > self.tolerance

    @property
    def inconclusive(self) -> bool:
        """Not a significant slowdown, yet the interval reaches below the threshold: a loss
        beyond the tolerance may hide in the noise, so neither pass nor fail can be said."""
        return not self.significance.significant and self.low < self.threshold


def speed_call(
    time_base: tuple[float, ...],
    time_tome: tuple[float, ...],
    baseline: RatioResult,
    tol: Tolerances,
) -> SpeedCall:
    """Compare this run's paired speedups with the baseline's (see `SpeedCall`)."""
    from pytest_tome.gate.stats import paired_ratios, paired_speedup, significantly_worse

    base = paired_speedup(baseline.time_base, baseline.time_tome).median
    current = paired_speedup(time_base, time_tome)
    return SpeedCall(
        slower=base / current.median - 1,
        tolerance=tol.speed,
        threshold=base / (1 + tol.speed),
        low=current.ci[0],
        significance=significantly_worse(
            paired_ratios(baseline.time_base, baseline.time_tome),
            current.ratios,
            worse="lower",
            alpha=tol.alpha,
        ),
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
