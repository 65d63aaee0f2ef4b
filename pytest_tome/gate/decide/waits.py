"""A merged path that waits: sleep, I/O, a lock, or work handed to another thread.

On the CPU with one thread the gate times the calling thread's CPU seconds, which a
neighbour taking the core away does not inflate, but which cannot see waiting either. So
every call is also read by the wall clock. A neighbour stretches wall time against CPU time
in both paths alike (their calls run back to back in each round); a merged path that waits
stretches only the merged call. Per round, the merged call's stretch (wall / CPU) is divided
by the unmerged call's: a one-sided sign test says whether its median is above 1.

When it is, the merged call's wait is what its wall time holds beyond its CPU time
stretched as the unmerged call's was: wall - CPU * (unmerged wall / unmerged CPU). A
neighbour stretches CPU work, not a sleep, so this is the wait a quiet machine would see
too; the speed call is made again on CPU time plus that wait (`tome_with_waits`).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from pytest_tome.gate.results import RatioResult

# Level of the sign test that the merged call waits: 6 of 6 rounds reach it (1/64 = 1.6%).
WAIT_ALPHA = 0.05


@dataclass(frozen=True)
class Waits:
    """How much longer than its CPU time the merged call took, beyond the unmerged path's
    stretch, and whether that is beyond chance."""

    significant: bool
    seconds: float  # median per image: wall - CPU * (the unmerged call's wall / CPU)
    stretch: float  # median of (merged wall / CPU) / (unmerged wall / CPU)
    test: str  # the sign test, described
    tome_with_waits: tuple[float, ...]  # per round: merged CPU seconds plus the wait

    def describe(self) -> str:
        return (
            f"the merged path waits {self.seconds * 1e3:.0f} ms per image beyond its CPU time "
            f"(wall/CPU {self.stretch:.2f}x the unmerged path's, {self.test})"
        )


def merged_waits(result: RatioResult) -> Waits | None:
    """The wait check of a run timed by the thread's CPU clock; None when the run was timed
    by the wall clock (waits are in its speedup already) or one clock was not recorded."""
    from pytest_tome.gate.decide.stats import median_beyond

    n = len(result.time_tome)
    clocks = (result.wall_base, result.wall_tome, result.cpu_base, result.cpu_tome)
    if n < 2 or any(len(c) != n for c in clocks) or result.time_tome != result.cpu_tome:
        return None
    if min(result.cpu_base) <= 0 or min(result.cpu_tome) <= 0:
        return None
    unmerged = [w / c for w, c in zip(result.wall_base, result.cpu_base)]
    stretch = [w / c / u for w, c, u in zip(result.wall_tome, result.cpu_tome, unmerged)]
    extra = [w - c * u for w, c, u in zip(result.wall_tome, result.cpu_tome, unmerged)]
    test = median_beyond(stretch, 1.0, side="above", alpha=WAIT_ALPHA)
    return Waits(
        significant=test.significant,
        seconds=statistics.median(extra),
        stretch=statistics.median(stretch),
        test=test.describe(),
        tome_with_waits=tuple(max(c + e, c * 1e-3) for c, e in zip(result.cpu_tome, extra)),
    )
