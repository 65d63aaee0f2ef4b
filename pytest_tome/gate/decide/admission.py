"""What a saving run may store: a measurement that passes its own checks; and a warning when
its interval covers its median less often than every later run's comparison assumes."""

from __future__ import annotations

from pytest_tome.gate.decide.verdicts import Decision
from pytest_tome.gate.results import NEW, RatioResult

# A saved speedup interval must cover the median at least this often: six rounds or more
# (five give 93.75%). With fewer, an unchanged rerun is compared with a 50-90% interval.
SAVE_COVERAGE = 0.95


def rounds_for(coverage: float = SAVE_COVERAGE) -> int:
    """The fewest paired rounds whose (min, max) interval covers the median that often."""
    return next(n for n in range(2, 64) if 1 - 2 * 0.5**n >= coverage)


def interval_too_short(time_base: tuple[float, ...], time_tome: tuple[float, ...]) -> bool:
    """Whether the speedup's interval covers the median less often than SAVE_COVERAGE."""
    from pytest_tome.gate.decide.stats import paired_speedup

    return paired_speedup(time_base, time_tome).confidence < SAVE_COVERAGE


def save_problems(decision: Decision) -> tuple[str, ...]:
    """Why a measurement decided against no baseline must not be stored; () when it may be."""
    return decision.reasons if decision.verdict != NEW else ()


def short_interval(result: RatioResult) -> str | None:
    """A warning when the speedup's interval covers its median less often than every later
    comparison assumes (fewer than `rounds_for()` rounds); None when it is long enough."""
    from pytest_tome.gate.decide.stats import paired_speedup

    if not result.time_tome or not interval_too_short(result.time_base, result.time_tome):
        return None
    coverage = paired_speedup(result.time_base, result.time_tome).confidence
    need = rounds_for()
    return (
        f"the baseline of {result.model} at ratio {result.ratio:g} was saved with "
        f"{len(result.time_tome)} rounds: a {coverage:.0%} interval, not the 95% later runs are "
        f"compared with, so an unchanged rerun may read as inconclusive; save it with "
        f"--tome-rounds={need} or more (or a --tome-max-rounds of {need} or more)"
    )
