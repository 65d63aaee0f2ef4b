"""The speed call: is this run's speedup worse than the baseline's, fine, or undecidable?

The tolerance draws the line, the threshold: the baseline's median speedup / (1 + tolerance),
the speedup left when the merged call takes `tolerance` longer (10%: a 9.1% lower speedup).
A loss beyond the tolerance must be shown to fail and ruled out to pass, by a
group-sequential sign test of this run's per-round speedups:
- fail: the upper confidence bound of their median lies below the line;
- pass: the lower bound lies above the line drawn from the baseline's upper bound (its 95%
  interval's) instead of its median, so that a baseline that read low cannot let a loss
  beyond the tolerance pass;
- otherwise *inconclusive*: the gate adds rounds while no look has decided
  (`speed_undecided`), and says so if they do not settle it.

The gate looks at fixed round counts only (`look_schedule`: the configured rounds, then
geometrically up to --tome-max-rounds), and the bounds at each look are wide enough that,
over all the looks together, a median exactly on the line passes (or fails) with at most
PASS_ALPHA (FAIL_ALPHA) probability: adding rounds until something decides does not inflate
the error rates (stats.sequential_counts). The first look that decides gives the verdict.
The baseline's median is a fixed reference (a saving run pins it to half the tolerance); its
own noise is in the simulated error rates (gate.decide.simulate, README).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_tome.gate.decide.tolerances import Tolerances
from pytest_tome.gate.results import FAIL, INCONCLUSIVE, PASS, RatioResult

# Over all looks of one run: the chance that this run's lower bound lies above its true
# median (PASS_ALPHA), and its upper bound below it (FAIL_ALPHA).
PASS_ALPHA = 0.1
FAIL_ALPHA = 0.05
# The pass line is drawn from the baseline median's upper bound, the upper end of its
# two-sided interval at this confidence (a one-sided 90% bound). With PASS_ALPHA, a median
# exactly at the tolerance passes in about 2-3% of simulated gate runs, baseline noise and
# optional stopping included (error_rates.py; README).
BASELINE_CONFIDENCE = 0.8
# Looks between the configured rounds and the most rounds: each look spends some alpha, so
# fewer looks decide sooner at each; four keep the steps between them at about 1.5x.
MOST_LOOKS = 4


def coverage_text(confidence: float) -> str:
    """' 97%' after an interval whose real coverage is not the 95% its column promises."""
    return "" if abs(confidence - 0.95) < 0.005 else f" {confidence:.0%}"


def look_schedule(rounds: int, most_rounds: int, looks: int = MOST_LOOKS) -> tuple[int, ...]:
    """The round counts at which the speed call may decide: `rounds`, then geometric steps up
    to `most_rounds` (6 and 20 give 6, 9, 13, 20), at most `looks` of them."""
    if rounds < 1 or looks < 1:
        raise ValueError(f"rounds and looks must be >= 1, got {rounds!r} and {looks!r}")
    most = max(rounds, most_rounds)
    if most == rounds or looks == 1:
        return (most,)
    grow = (most / rounds) ** (1 / (looks - 1))
    points = {rounds, most} | {round(rounds * grow**k) for k in range(1, looks - 1)}
    return tuple(sorted(points))


@dataclass(frozen=True)
class SpeedCall:
    """The speed comparison of one run with its baseline, before it becomes a row."""

    status: str  # PASS, FAIL or INCONCLUSIVE
    slower: float  # how much longer the merged call takes, relative (negative: faster)
    tolerance: float
    threshold: float  # the line: baseline median / (1 + tolerance); a bound below it fails
    pass_line: float  # the baseline's upper bound / (1 + tolerance): a bound above it passes
    low: float  # the median's lower bound at the deciding (or last) look; -inf: none yet
    high: float  # its upper bound; inf: none yet
    rounds: int  # the rounds of that look
    looks: tuple[int, ...]

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    @property
    def inconclusive(self) -> bool:
        """No look showed the median above or below the line: a loss beyond the tolerance may
        hide in the noise, so neither pass nor fail can be said."""
        return self.status == INCONCLUSIVE

    def bounds_text(self) -> str:
        low = "-" if math.isinf(self.low) else f"{self.low:.2f}x"
        high = "-" if math.isinf(self.high) else f"{self.high:.2f}x"
        looks = ", ".join(str(n) for n in self.looks)
        return (
            f"median bounds [{low}, {high}] after {self.rounds} rounds "
            f"(sequential sign test, looks at {looks})"
        )


def _bounds(ratios: Sequence[float], above: int, below: int) -> tuple[float, float]:
    """The `above`-th largest and `below`-th smallest ratio: at least `above` samples lie
    above the line exactly when the first is above it (ties count for neither side)."""
    ordered = sorted(ratios)
    n = len(ordered)
    low = ordered[n - above] if above <= n else -math.inf
    high = ordered[below - 1] if below <= n else math.inf
    return low, high


def sequential_call(
    ratios: Sequence[float],
    threshold: float,
    looks: Sequence[int] | None = None,
    pass_line: float | None = None,
) -> tuple[str, float, float, int]:
    """(status, low, high, rounds): the first look whose lower bound lies above `pass_line`
    (default: `threshold`) passes, whose upper bound lies below `threshold` fails; with none,
    inconclusive at the last look reached. Looks beyond the rounds measured are not reached;
    without `looks`, one look at all the rounds."""
    from pytest_tome.gate.decide.stats import sequential_counts

    schedule = tuple(looks) if looks else (len(ratios),)
    pass_at = sequential_counts(schedule, PASS_ALPHA)
    fail_at = sequential_counts(schedule, FAIL_ALPHA)
    reached = [k for k, n in enumerate(schedule) if n <= len(ratios)]
    low, high, rounds = -math.inf, math.inf, len(ratios)
    for k in reached:
        rounds = schedule[k]
        low, high = _bounds(ratios[:rounds], pass_at[k], fail_at[k])
        if low > (threshold if pass_line is None else pass_line):
            return PASS, low, high, rounds
        if high < threshold:
            return FAIL, low, high, rounds
    return INCONCLUSIVE, low, high, rounds


def speed_call(
    time_base: tuple[float, ...],
    time_tome: tuple[float, ...],
    baseline: RatioResult,
    tol: Tolerances,
    looks: Sequence[int] | None = None,
) -> SpeedCall:
    """Compare this run's paired speedups with the baseline's median (see `SpeedCall`)."""
    from pytest_tome.gate.decide.stats import median_ci, paired_speedup

    base = paired_speedup(baseline.time_base, baseline.time_tome)
    current = paired_speedup(time_base, time_tome)
    threshold = base.median / (1 + tol.speed)
    base_high = median_ci(base.ratios, BASELINE_CONFIDENCE)[0][1]
    pass_line = max(base_high, base.median) / (1 + tol.speed)
    status, low, high, rounds = sequential_call(current.ratios, threshold, looks, pass_line)
    return SpeedCall(
        status=status,
        slower=base.median / current.median - 1,
        tolerance=tol.speed,
        threshold=threshold,
        pass_line=pass_line,
        low=low,
        high=high,
        rounds=rounds,
        looks=tuple(looks) if looks else (len(current.ratios),),
    )


def speed_undecided(
    time_base: tuple[float, ...],
    time_tome: tuple[float, ...],
    baseline: RatioResult | None,
    tol: Tolerances,
    looks: Sequence[int] | None = None,
) -> bool:
    """Whether more rounds are needed: the median's interval reaches farther below it than the
    tolerance (half the tolerance when saving: every later run reads a baseline), or, against
    a baseline, no look has decided yet. A verdict from a loosely pinned median could be
    right while the speedup it reports is off by more than the tolerance."""
    from pytest_tome.gate.decide.stats import paired_speedup

    if len(time_base) < 2:
        return True
    current = paired_speedup(time_base, time_tome)
    if baseline is None or not baseline.time_tome:
        half = 1 + tol.speed / 2
        return current.ci[0] < current.median / half or current.ci[1] > current.median * half
    if current.ci[0] < current.median / (1 + tol.speed):
        return True
    return speed_call(time_base, time_tome, baseline, tol, looks).inconclusive
