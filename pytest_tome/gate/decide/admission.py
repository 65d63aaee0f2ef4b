"""What a saving run may store: a measurement that passes its own checks, with an interval
that covers its median as often as every later run's comparison assumes."""

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


def save_problems(result: RatioResult, decision: Decision) -> tuple[str, ...]:
    """Why `result` (decided against no baseline) must not be stored; () when it may be."""
    from pytest_tome.gate.decide.stats import paired_speedup

    problems = list(decision.reasons) if decision.verdict != NEW else []
    if result.time_tome and interval_too_short(result.time_base, result.time_tome):
        coverage = paired_speedup(result.time_base, result.time_tome).confidence
        need = rounds_for()
        problems.insert(
            0,
            f"speedup: {len(result.time_tome)} rounds give a {coverage:.0%} interval, not the "
            f"95% every later run is compared with; a baseline needs at least {need} rounds "
            f"(--tome-rounds={need}, or a --tome-max-rounds of {need} or more)",
        )
    return tuple(problems)
