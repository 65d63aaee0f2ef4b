"""`--tome-bisect`: the exit status `git bisect run` reads (0 good, 1 bad, 125 skip).

A failed verdict means the commit is bad. A verdict too noisy to decide, a missing baseline,
a fingerprint mismatch or a corrupt baseline file say nothing about the commit: 125 makes git
skip it and test another. So does a run that collected no test or could not run its tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pytest_tome.gate.results import FAIL, INCONCLUSIVE, RatioResult

GOOD, BAD, SKIP = 0, 1, 125
UNUSABLE_BASELINE = ("missing", "fingerprint mismatch", "corrupt")
CANNOT_RUN = (
    pytest.ExitCode.INTERRUPTED,
    pytest.ExitCode.INTERNAL_ERROR,
    pytest.ExitCode.USAGE_ERROR,
    pytest.ExitCode.NO_TESTS_COLLECTED,
)


def _untestable(result: RatioResult) -> str | None:
    """Why this result cannot judge the commit, or None when it can."""
    for check, status in result.checks:
        if check == "baseline" and status in UNUSABLE_BASELINE:
            return f"baseline {status}"
    return "inconclusive" if result.verdict == INCONCLUSIVE else None


def bisect_status(results: Sequence[RatioResult], exitstatus: int) -> tuple[int, str]:
    """The exit status for `git bisect run`, and a line saying why."""
    where = [f"{r.model} {r.ratio:g}" + ("" if r.method == "tome" else f" ({r.method})")
             for r in results]  # fmt: skip
    failed = [w for w, r in zip(where, results) if r.verdict == FAIL and not _untestable(r)]
    if failed:
        return BAD, f"bad: the gate failed for {', '.join(failed)}"
    skipped = [f"{w}: {_untestable(r)}" for w, r in zip(where, results) if _untestable(r)]
    if skipped:
        return SKIP, f"skip (cannot tell): {'; '.join(skipped)}"
    if exitstatus in CANNOT_RUN:
        return SKIP, f"skip (cannot tell): pytest ended with {pytest.ExitCode(exitstatus).name}"
    if not results:
        return SKIP, "skip (cannot tell): no gate test ran"
    if exitstatus != pytest.ExitCode.OK:
        return BAD, "bad: tests failed"
    return GOOD, "good: every gate verdict passed"
