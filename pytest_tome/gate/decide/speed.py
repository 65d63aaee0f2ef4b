"""The speed call: is this run's speedup worse than the baseline's, fine, or undecidable?

The tolerance draws one line, the threshold: the baseline's median speedup / (1 + tolerance).
A loss beyond the tolerance must be shown to fail, and ruled out to pass:
- fail: this run's per-round speedups lie significantly below the baseline's shrunk by the
  tolerance (one-sided Mann-Whitney U at the tolerances' alpha, 0.01 by default), and the
  median lies below the line;
- pass: they lie significantly above the line (a one-sided sign test at EQUIVALENCE_ALPHA,
  as in an equivalence test);
- otherwise *inconclusive*: the gate adds rounds while a call is undecided
  (`speed_undecided`), and says so if they do not settle it.

Failing weighs the baseline's own noise (two samples), so a baseline that read a little high
does not turn a busy but unchanged run into a failure. Passing takes the baseline's median as
a fixed reference (one sample against a line needs about two thirds of the shift that two
noisy samples need), so a noisy baseline does not make every later run undecidable; a saving
run adds rounds until its median is pinned to half the tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pytest_tome.gate.decide.tolerances import Tolerances
from pytest_tome.gate.results import RatioResult

# The level at which a loss beyond the tolerance counts as ruled out, as in an equivalence
# test (TOST); looser than the 1% that a failure needs, since this decides only whether the
# gate could see, and a wrong "could see" needs a loss the tolerance calls large.
EQUIVALENCE_ALPHA = 0.05


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
    significance: Any  # stats.Significance of "below the baseline's rounds shrunk": a large loss
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
    from pytest_tome.gate.decide.stats import median_beyond, paired_speedup, significantly_worse

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
            [ratio / (1 + tol.speed) for ratio in base_speedup.ratios],
            current.ratios,
            worse="lower",
            alpha=tol.alpha,
        ),
        within=median_beyond(current.ratios, threshold, side="above", alpha=EQUIVALENCE_ALPHA),
    )


def speed_undecided(
    time_base: tuple[float, ...],
    time_tome: tuple[float, ...],
    baseline: RatioResult | None,
    tol: Tolerances,
) -> bool:
    """Whether more rounds are needed: the median's interval reaches farther below it than the
    tolerance (half the tolerance when saving: every later run reads a baseline), or, against
    a baseline, the call would be inconclusive. A verdict from a loosely pinned median could
    be right while the speedup it reports is off by more than the tolerance."""
    from pytest_tome.gate.decide.stats import paired_speedup

    if len(time_base) < 2:
        return True
    current = paired_speedup(time_base, time_tome)
    if baseline is None or not baseline.time_tome:
        return current.ci[0] < current.median / (1 + tol.speed / 2)
    if current.ci[0] < current.median / (1 + tol.speed):
        return True
    return speed_call(time_base, time_tome, baseline, tol).inconclusive
