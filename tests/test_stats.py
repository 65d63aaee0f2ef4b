"""Statistics on raw samples: spread, paired speedup, and the one-sided significance test."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_tome.gate.decide.stats import (
    median_ci,
    paired_ratios,
    paired_speedup,
    significantly_worse,
    spread,
)


def test_spread_gives_median_and_quartiles():
    result = spread([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (result.median, result.q1, result.q3, result.iqr) == (3.0, 2.0, 4.0, 2.0)


@pytest.mark.parametrize("bad", [[], [1.0, math.nan], [[1.0, 2.0]]])
def test_spread_rejects_empty_or_non_finite_samples(bad):
    with pytest.raises(ValueError, match="samples"):
        spread(bad)


def test_median_interval_below_six_samples_is_the_range_with_its_true_coverage():
    (low, high), coverage = median_ci([3.0, 1.0, 2.0, 5.0, 4.0])
    assert (low, high) == (1.0, 5.0)
    assert coverage == pytest.approx(1 - 2 * 0.5**5)  # 93.75%, not a claimed 95%


def test_median_interval_with_many_samples_is_narrower_than_the_range():
    samples = list(np.linspace(1.0, 2.0, 20))
    (low, high), coverage = median_ci(samples)
    assert 1.0 < low < np.median(samples) < high < 2.0
    assert 0.95 <= coverage < 0.97


@pytest.mark.parametrize(
    ("n", "ranks", "coverage"),
    [(6, (1, 6), 1 - 2 / 64), (9, (2, 8), 1 - 2 * 10 / 512), (12, (3, 10), 1 - 2 * 79 / 4096)],
)
def test_median_interval_reports_the_coverage_its_order_statistics_really_have(n, ranks, coverage):
    samples = [float(i) for i in range(1, n + 1)]
    interval, real = median_ci(samples[::-1])
    assert interval == ranks  # the samples are their own ranks
    assert real == pytest.approx(coverage) and real >= 0.95


def test_paired_speedup_is_the_median_of_per_round_ratios():
    speedup = paired_speedup([2.0, 4.0, 3.0], [1.0, 1.0, 3.0])
    assert speedup.ratios == (2.0, 4.0, 1.0)
    assert speedup.median == 2.0
    assert speedup.ci == (1.0, 4.0)


@pytest.mark.parametrize(
    ("base", "tome", "match"),
    [([1.0, 2.0], [1.0], "differ in length"), ([1.0, 0.0], [1.0, 1.0], "positive")],
)
def test_paired_ratios_reject_unpaired_or_non_positive_times(base, tome, match):
    with pytest.raises(ValueError, match=match):
        paired_ratios(base, tome)


def test_a_clear_shift_with_five_rounds_is_significant_by_the_exact_test():
    baseline = [1.40, 1.42, 1.45, 1.41, 1.43]
    current = [1.12, 1.15, 1.13, 1.16, 1.11]
    result = significantly_worse(baseline, current, worse="lower")
    assert result.significant
    assert result.method == "Mann-Whitney U"
    assert result.p_value == pytest.approx(1 / math.comb(10, 5))


def test_under_no_change_the_test_is_significant_no_more_often_than_alpha():
    rng = np.random.default_rng(0)
    trials = 1 + 0.03 * rng.standard_normal((400, 2, 7))
    rate = np.mean([significantly_worse(b, c, worse="lower").significant for b, c in trials])
    assert rate <= 0.01 + 0.01  # calibrated: chance alone, which the tolerance then guards


def test_a_shift_in_the_better_direction_is_never_significant():
    result = significantly_worse(
        [1.0, 1.1, 1.2, 1.3, 1.4], [2.0, 2.1, 2.2, 2.3, 2.4], worse="lower"
    )
    assert not result.significant
    assert result.p_value == pytest.approx(1.0)


def test_too_few_samples_are_never_significant():
    # 3 + 3 samples: the smallest one-sided rank p-value is 1/20, above alpha 0.01, and the
    # medians' order-statistic intervals would cover only 75%: no claim is made.
    apart = significantly_worse([1.0, 1.1, 1.2], [1.5, 1.6, 1.7], worse="higher")
    assert (apart.method, apart.significant) == ("too few samples for alpha 0.01", False)
    assert apart.describe() == "not significant (too few samples for alpha 0.01)"
    # The same separation with enough samples is significant.
    more = significantly_worse(
        [1.0, 1.1, 1.2, 1.05, 1.15], [1.5, 1.6, 1.7, 1.55, 1.65], worse="higher"
    )
    assert more.significant and more.method == "Mann-Whitney U"


@pytest.mark.parametrize(("current", "expected"), [(110, True), (100, False), (90, False)])
def test_constant_samples_are_deterministic_and_differ_as_soon_as_they_differ(current, expected):
    result = significantly_worse([100] * 5, [current] * 5, worse="higher")
    assert (result.method, result.significant) == ("deterministic", expected)


def test_ties_use_an_exhaustive_permutation_test_with_a_reproducible_p_value():
    baseline, current = [100, 100, 101, 100, 100], [120, 120, 121, 120, 120]
    first = significantly_worse(baseline, current, worse="higher")
    second = significantly_worse(baseline, current, worse="higher")
    assert (first.method, first.significant) == ("Mann-Whitney U", True)
    assert first.p_value == second.p_value == pytest.approx(1 / math.comb(10, 5))


@given(
    baseline=st.lists(st.floats(1.0, 2.0), min_size=5, max_size=7),
    current_size=st.integers(5, 7),
    shift=st.floats(1.01, 3.0),
)
def test_complete_separation_from_five_rounds_on_is_always_significant(
    baseline, current_size, shift
):
    current = [min(baseline) / shift] * current_size
    current = [c * (1 - 0.001 * i) for i, c in enumerate(current)]  # distinct values
    assert significantly_worse(baseline, current, worse="lower").significant


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"worse": "up"}, "worse must be"), ({"worse": "lower", "alpha": 0}, "alpha")],
)
def test_bad_arguments_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        significantly_worse([1.0, 2.0], [1.0, 2.0], **kwargs)


def test_describe_says_the_method_and_p_value():
    result = significantly_worse(
        [1.4, 1.42, 1.45, 1.41, 1.43], [1.1, 1.2, 1.15, 1.12, 1.13], worse="lower"
    )
    assert result.describe() == "significant (Mann-Whitney U p=0.00397)"


@pytest.mark.parametrize(
    ("samples", "side", "alpha", "significant", "p"),
    [
        ((1.2,) * 6, "above", 0.05, True, 1 / 64),  # all six above: 0.5 ** 6
        ((1.2,) * 6, "below", 0.05, False, 1.0),
        ((1.2,) * 5 + (0.9,), "above", 0.05, False, 7 / 64),  # five of six: P(B >= 5)
        ((1.2,) * 7 + (0.9,), "above", 0.05, True, 9 / 256),  # seven of eight
        ((0.9,) * 7, "below", 0.01, True, 1 / 128),
        ((1.0, 1.0, 1.2, 1.2, 1.2, 1.2, 1.2), "above", 0.01, False, None),  # ties leave 5
    ],
)
def test_median_beyond_is_an_exact_one_sided_sign_test(samples, side, alpha, significant, p):
    from pytest_tome.gate.decide.stats import median_beyond

    result = median_beyond(samples, 1.0, side=side, alpha=alpha)
    assert result.significant == significant
    if p is None:
        assert result.method == f"too few samples for alpha {alpha:g}" and result.p_value is None
    else:
        assert result.method == "sign test"
        assert result.p_value == pytest.approx(p)


def test_median_beyond_names_a_bad_side_or_alpha():
    from pytest_tome.gate.decide.stats import median_beyond

    with pytest.raises(ValueError, match="side must be 'above' or 'below', got 'up'"):
        median_beyond((1.0, 2.0), 1.5, side="up", alpha=0.05)
    with pytest.raises(ValueError, match="alpha must be between 0 and 1, got 5"):
        median_beyond((1.0, 2.0), 1.5, side="above", alpha=5)


@pytest.mark.parametrize(
    ("looks", "alpha"),
    [((6, 9, 13, 20), 0.05), ((8, 11, 15, 20), 0.1), ((20,), 0.05), ((2,), 0.05)],
)
def test_a_sequential_sign_test_rejects_a_true_median_at_most_alpha_over_all_looks(looks, alpha):
    """Exact, by enumerating every sequence of sides for the first looks (fair coins)."""
    import itertools

    from pytest_tome.gate.decide.stats import sequential_counts

    counts = sequential_counts(looks, alpha)
    n = min(looks[-1], 13)  # 8192 sequences; the tail beyond is covered by the DP itself
    reach = [k for k, m in enumerate(looks) if m <= n]
    rejected = sum(
        any(sum(flips[: looks[k]]) >= counts[k] for k in reach)
        for flips in itertools.product((0, 1), repeat=n)
    )
    assert rejected / 2**n <= alpha
    assert all(c <= m + 1 for c, m in zip(counts, looks))
    if looks == (20,):
        assert counts == (15,)  # the fixed-sample test: P(B(20) >= 15) = 2.1% <= 5% < 5.8%
    if looks == (2,):
        assert counts == (3,)  # two rounds can never reach 5%


def test_a_sequential_test_hands_a_look_it_cannot_use_on():
    from pytest_tome.gate.decide.stats import sequential_counts

    # Six rounds cannot reach 1% (1/64 at best): that look rejects nothing and hands its
    # share on, so the last look needs 16 of 20, as a fixed-sample test at 1% would.
    assert sequential_counts((6, 9, 13, 20), 0.01) == (7, 9, 12, 16)


def test_sequential_counts_name_bad_looks_and_alpha():
    from pytest_tome.gate.decide.stats import sequential_counts

    with pytest.raises(
        ValueError, match=r"looks must be increasing round counts >= 1, got \(9, 6\)"
    ):
        sequential_counts((9, 6), 0.05)
    with pytest.raises(ValueError, match="alpha must be between 0 and 1, got 2"):
        sequential_counts((6,), 2)
