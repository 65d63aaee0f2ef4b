"""Statistics on raw timing and memory samples: paired speedup, spread, significance.

Two tests, both exact for the handful of rounds a benchmark affords. Speed: a sign test of
this run's per-round speedups against one reference value (the threshold the baseline and the
tolerance set), the test that goes with the median's order-statistic interval. Memory, as
asv (airspeed velocity) does: Mann-Whitney U of two sets of raw samples. With too few samples
for a test to ever reach the significance level, nothing is called significant: the verdict
says it cannot decide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

# Exhaustive permutations for the small samples we see, so the p-value is exact and the
# seed only matters for very large samples, where resampling takes over.
_PERMUTATIONS = 9999


@dataclass(frozen=True)
class Spread:
    """Median and interquartile range of one side's samples."""

    median: float
    q1: float
    q3: float

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1


@dataclass(frozen=True)
class Speedup:
    """Median of the paired per-round ratios time_base / time_tome, with its interval."""

    ratios: tuple[float, ...]
    median: float
    ci: tuple[float, float]
    confidence: float  # the coverage the interval really has (order statistics are discrete)


@dataclass(frozen=True)
class Significance:
    """Whether a difference is there beyond chance, and by which test."""

    significant: bool
    method: str  # "Mann-Whitney U", "sign test", "deterministic", or "too few samples ..."
    p_value: float | None = None  # only for a test that ran

    def describe(self) -> str:
        word = "significant" if self.significant else "not significant"
        if self.p_value is None:
            return f"{word} ({self.method})"
        return f"{word} ({self.method} p={self.p_value:.3g})"


def _checked(samples: Sequence[float], name: str) -> np.ndarray:
    values = np.asarray(samples, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"{name} must be a non-empty sequence of numbers, got {samples!r}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must hold finite numbers, got {samples!r}")
    return values


def spread(samples: Sequence[float]) -> Spread:
    """Median and quartiles (numpy's linear interpolation) of `samples`."""
    values = _checked(samples, "samples")
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return Spread(median=float(median), q1=float(q1), q3=float(q3))


def median_ci(
    samples: Sequence[float], confidence: float = 0.95
) -> tuple[tuple[float, float], float]:
    """A distribution-free interval for the median, and the coverage it really has.

    The interval runs from the (r+1)-th smallest to the (r+1)-th largest sample, for the
    largest r whose coverage 1 - 2 * P(B <= r), B ~ Binomial(n, 1/2), is still at least
    `confidence`. Order statistics are discrete, so that coverage is returned as it is
    (96.9% for six samples, 97.9% for nine); below six samples not even (min, max) reaches
    95%, and its own coverage 1 - 2 * 0.5**n is returned (93.75% for five samples).
    """
    values = np.sort(_checked(samples, "samples"))
    r, coverage = _order_rank(values.size, confidence)
    return (float(values[r]), float(values[values.size - 1 - r])), coverage


@lru_cache(maxsize=256)
def _order_rank(n: int, confidence: float) -> tuple[int, float]:
    """The rank r of `median_ci` for n samples, and its coverage (cached: the gate asks after
    every round)."""
    r = 0
    while r + 1 < (n + 1) // 2 and 1 - 2 * _binom_cdf(r + 1, n) >= confidence:
        r += 1
    return r, 1 - 2 * _binom_cdf(r, n)


def _binom_cdf(k: int, n: int) -> float:
    """P(Binomial(n, 1/2) <= k), exactly."""
    return math.fsum(math.comb(n, i) for i in range(k + 1)) / 2**n


def paired_ratios(time_base: Sequence[float], time_tome: Sequence[float]) -> tuple[float, ...]:
    """time_base[i] / time_tome[i] for each round: the speedup each round measured."""
    base = _checked(time_base, "time_base")
    tome = _checked(time_tome, "time_tome")
    if base.shape != tome.shape:
        raise ValueError(f"paired samples differ in length: {base.size} base vs {tome.size} merged")
    if np.any(base <= 0) or np.any(tome <= 0):
        raise ValueError("times must be positive seconds")
    return tuple(float(r) for r in base / tome)


def paired_speedup(
    time_base: Sequence[float], time_tome: Sequence[float], confidence: float = 0.95
) -> Speedup:
    """Speedup of the merged run over the unmerged one, from rounds measured back to back."""
    ratios = paired_ratios(time_base, time_tome)
    ci, coverage = median_ci(ratios, confidence)
    return Speedup(ratios=ratios, median=float(np.median(ratios)), ci=ci, confidence=coverage)


def median_beyond(
    samples: Sequence[float],
    reference: float,
    *,
    side: Literal["above", "below"],
    alpha: float,
) -> Significance:
    """Is the median of `samples` above (or below) `reference`, beyond chance?

    One-sided exact sign test: under "the median is `reference`", each sample lies on either
    side with probability 1/2, so p = P(Binomial(n, 1/2) >= the count on `side`), samples
    equal to `reference` left out. It asks nothing of the samples' shape, and one disturbed
    round moves it by one count only. Below log2(1/alpha) samples nothing is significant.
    """
    if side not in ("above", "below"):
        raise ValueError(f"side must be 'above' or 'below', got {side!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")
    values = _checked(samples, "samples")
    above, below = int(np.sum(values > reference)), int(np.sum(values < reference))
    n = above + below
    if n == 0 or 0.5**n >= alpha:
        return Significance(False, f"too few samples for alpha {alpha:g}")
    count = above if side == "above" else below
    p = 1 - _binom_cdf(count - 1, n)
    return Significance(p < alpha, "sign test", p)


def significantly_worse(
    baseline: Sequence[float],
    current: Sequence[float],
    *,
    worse: Literal["lower", "higher"],
    alpha: float = 0.01,
) -> Significance:
    """Is `current` shifted from `baseline` in the `worse` direction, beyond chance?

    One-sided Mann-Whitney U on the raw samples when the sample sizes allow a p-value below
    `alpha` at all (five or more per side at alpha 0.01); with fewer samples nothing is
    significant at `alpha` ("too few samples": a verdict then says it cannot decide, rather
    than trusting order-statistic intervals whose real coverage is 50-90%). Two constant
    samples (a deterministic allocator) differ significantly as soon as they differ.
    """
    if worse not in ("lower", "higher"):
        raise ValueError(f"worse must be 'lower' or 'higher', got {worse!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")
    base = _checked(baseline, "baseline samples")
    cur = _checked(current, "current samples")
    from scipy import stats

    sign = 1.0 if worse == "higher" else -1.0
    if np.ptp(base) == 0 and np.ptp(cur) == 0:
        return Significance(bool(sign * (cur[0] - base[0]) > 0), "deterministic")
    smallest_p = 1.0 / math.comb(base.size + cur.size, base.size)
    if smallest_p < alpha:
        alternative = "greater" if worse == "higher" else "less"
        ties = np.unique(np.concatenate([base, cur])).size < base.size + cur.size
        method = (
            stats.PermutationMethod(n_resamples=_PERMUTATIONS, rng=np.random.default_rng(0))
            if ties
            else "exact"
        )
        p = float(stats.mannwhitneyu(cur, base, alternative=alternative, method=method).pvalue)
        return Significance(p < alpha, "Mann-Whitney U", p)
    return Significance(False, f"too few samples for alpha {alpha:g}")


def spending(t: float, alpha: float) -> float:
    """Pocock-type alpha spending (Lan and DeMets): the share of `alpha` a sequential test may
    have used up by information fraction t (rounds so far / most rounds), alpha*ln(1+(e-1)t).
    It spends early, so a clear result stops at the first look."""
    return alpha * math.log(1 + (math.e - 1) * min(max(t, 0.0), 1.0))


@lru_cache(maxsize=256)
def sequential_counts(looks: tuple[int, ...], alpha: float) -> tuple[int, ...]:
    """A group-sequential one-sided sign test: at look k (after looks[k] samples), reject when
    at least counts[k] samples lie on the tested side of the reference.

    Exact: under the null (the median on the reference) the count is a random walk of fair
    coin flips. Each look's count is the smallest whose first-rejection probability there,
    over the walks not rejected before, stays within what `spending` allows by then minus
    what earlier looks really used; so a look too small to reject anything hands its share
    on. The chance to reject at any look is at most `alpha`, however the looks fall.
    A count of looks[k] + 1 means that look cannot reject.
    """
    if not looks or list(looks) != sorted(set(looks)) or looks[0] < 1:
        raise ValueError(f"looks must be increasing round counts >= 1, got {looks!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")
    walks = np.array([1.0])  # P(count = i, not rejected yet) after `done` samples
    done, used, counts = 0, 0.0, []
    for n in looks:
        step = np.array([math.comb(n - done, i) for i in range(n - done + 1)]) / 2 ** (n - done)
        walks, done = np.convolve(walks, step), n
        budget = spending(n / looks[-1], alpha) - used
        tails = np.cumsum(walks[::-1])[::-1]  # tails[c] = P(count >= c, not rejected yet)
        count = next((c for c in range(n + 1) if tails[c] <= budget + 1e-12), n + 1)
        if count <= n:
            used += float(tails[count])
            walks[count:] = 0.0
        counts.append(count)
    return tuple(counts)
