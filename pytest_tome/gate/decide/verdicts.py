"""The decision whether a measured ratio passes against its baseline (tolerances: tolerances.py).

Speed is judged on the speedup (time_base / time_tome, paired within a round), not on
absolute times: absolute times drift between runs on a shared machine, the within-run ratio
does not. Speed fails when a loss beyond the tolerance is shown and passes only when it is
ruled out (decide.speed); memory fails only when worse beyond chance
(stats.significantly_worse) *and* by more than the tolerance; quality fails when PSNR or
SSIM drop by more than theirs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from pytest_tome.gate.decide.speed import coverage_text, speed_call
from pytest_tome.gate.decide.tolerances import Tolerances
from pytest_tome.gate.decide.waits import merged_waits
from pytest_tome.gate.results import (
    FAIL,
    INCONCLUSIVE,
    MEMORY_RSS,
    NEW,
    NOT_APPLICABLE,
    NOT_MEASURED,
    PASS,
    RatioResult,
)

Looks = Sequence[int] | None

# At or above this PSNR merged and unmerged images count as identical: an RMS difference
# below 1e-4 of the range, a fortieth of one 8-bit step.
IDENTICAL_PSNR = 80.0
# Peak memory may grow by this much whatever the tolerance: resident-set and allocator
# granularity make a few MiB come and go between runs of the same code on small models.
MEMORY_SLACK_BYTES = 16 << 20
IDENTICAL_WHY = (
    "merged images are identical to the unmerged ones at ratio {ratio:g}: merging changed "
    "nothing (did it stop at run time?)"
)
RSS_NOT_GATED = (
    "reported, not gated: a process's peak RSS growth depends on what it allocated before "
    "(the same call reads 40 or 90 MiB); gated where the allocator counts bytes (CUDA)"
)


@dataclass(frozen=True)
class Row:
    """One line of the verdict table."""

    metric: str
    measured: str
    baseline: str
    tolerance: str
    status: str  # PASS, FAIL, INCONCLUSIVE, NEW, NOT_APPLICABLE or NOT_MEASURED
    why: str = ""


@dataclass(frozen=True)
class Decision:
    verdict: str  # FAIL, INCONCLUSIVE, NEW or PASS
    reasons: tuple[str, ...]  # failures first, then notes worth reading
    rows: tuple[Row, ...]

    @property
    def table(self) -> str:
        return format_table(self.rows)

    @property
    def checks(self) -> tuple[tuple[str, str], ...]:
        """(metric, status) per row, for RatioResult.checks."""
        return tuple((row.metric, row.status) for row in self.rows)


def format_table(rows: tuple[Row, ...] | list[Row]) -> str:
    """The rows as a compact plain-text table with a header, columns aligned."""
    header = ("metric", "measured", "baseline", "tolerance", "status", "why")
    cells = [
        header,
        *((r.metric, r.measured, r.baseline, r.tolerance, r.status, r.why) for r in rows),
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells)


def decide(
    current: RatioResult,
    baseline: RatioResult | None,
    tolerances: Tolerances,
    *,
    quality_applies: bool,
    looks: Looks = None,
) -> Decision:
    """Compare one ratio's measurements with its baseline entry (None: there is none yet).

    `looks`: the round counts at which the speed call may have stopped (speed.look_schedule);
    None: one look at the rounds measured."""
    rows: list[Row] = []
    notes: list[str] = []
    rows.append(_speed(current, baseline, tolerances, looks))
    rows.append(_memory(current, baseline, tolerances, notes))
    rows.extend(_quality(current, baseline, tolerances, quality_applies, notes))
    failed = [f"{r.metric}: {r.why}" for r in rows if r.status in (FAIL, INCONCLUSIVE)]
    verdict = (
        FAIL
        if any(r.status == FAIL for r in rows)
        else INCONCLUSIVE
        if failed
        else NEW
        if baseline is None
        else PASS
    )
    return Decision(verdict, tuple(failed + notes), tuple(rows))


def _speedup_text(result: RatioResult) -> str:
    from pytest_tome.gate.decide.stats import paired_speedup  # numpy: not at start-up

    speedup = paired_speedup(result.time_base, result.time_tome)
    low, high = speedup.ci
    return f"{speedup.median:.2f}x [{low:.2f}, {high:.2f}]{coverage_text(speedup.confidence)}"


def _speed(
    current: RatioResult, baseline: RatioResult | None, tol: Tolerances, looks: Looks
) -> Row:
    tolerance = f"{tol.speed:.0%} slower"
    if not current.time_tome:
        return Row("speedup", "-", "-", tolerance, NOT_MEASURED)
    measured = _speedup_text(current)
    if baseline is None:
        return Row("speedup", measured, "-", tolerance, NEW, "no baseline yet")
    call = speed_call(current.time_base, current.time_tome, baseline, tol, looks)
    line = f"the {call.threshold:.2f}x that {tol.speed:.0%} slower allows"
    pass_line = f"{call.pass_line:.2f}x, the baseline's upper bound less {tol.speed:.0%} slower"
    why = _change(call.slower, "slower", "faster")
    waits = merged_waits(current)
    if waits is not None and waits.significant:
        walled = speed_call(current.cpu_base, waits.tome_with_waits, baseline, tol, looks)
        if walled.status == FAIL:
            why = (
                f"{_change(walled.slower, 'slower', 'faster')} with the waits in: "
                f"{waits.describe()}; {walled.bounds_text()} wholly below {line}"
            )
            return Row("speedup", measured, _speedup_text(baseline), tolerance, FAIL, why)
        why += f"; {waits.describe()}, within the tolerance"
    if call.status == FAIL:
        why += f"; {call.bounds_text()} wholly below {line}"
    elif call.status == PASS:
        why += f"; {call.bounds_text()} wholly above {pass_line}"
    else:
        why += (
            f"; too noisy to decide: a speedup below {line} is not ruled out "
            f"(a pass needs the lower bound above {pass_line}; {call.bounds_text()})"
        )
    return Row("speedup", measured, _speedup_text(baseline), tolerance, call.status, why)


def _change(fraction: float, worse: str, better: str) -> str:
    if abs(fraction) < 0.0005:
        return "unchanged"
    return f"{fraction:.1%} {worse}" if fraction > 0 else f"{-fraction:.1%} {better}"


def _memory_samples(result: RatioResult) -> tuple[int, ...]:
    if result.memory_tome_samples:
        return result.memory_tome_samples
    return () if result.memory_tome is None else (result.memory_tome,)


def _mib(samples: tuple[int, ...]) -> str:
    from pytest_tome.gate.decide.stats import spread

    return f"{spread(samples).median / 2**20:.1f} MiB" if samples else "-"


def _memory(
    current: RatioResult, baseline: RatioResult | None, tol: Tolerances, notes: list[str]
) -> Row:
    tolerance = f"{tol.memory:.0%} more"
    cur = _memory_samples(current)
    base = _memory_samples(baseline) if baseline is not None else ()
    row = Row("peak memory", _mib(cur), _mib(base), tolerance, NOT_MEASURED)
    if not cur:
        return replace(row, why=f"{current.memory_method} on this device")
    if baseline is None:
        return replace(row, status=NEW, why="no baseline yet")
    if not base:
        return replace(row, why="the baseline has no memory measurement")
    if current.memory_method == MEMORY_RSS:
        return replace(row, status=NOT_APPLICABLE, why=RSS_NOT_GATED)
    if baseline.memory_method != current.memory_method:
        notes.append(
            f"peak memory not compared: baseline measured {baseline.memory_method!r}, "
            f"now {current.memory_method!r}"
        )
        return replace(row, why=f"baseline: {baseline.memory_method}, now: {current.memory_method}")
    from pytest_tome.gate.decide.stats import significantly_worse, spread

    base_median, cur_median = spread(base).median, spread(cur).median
    more = (
        cur_median / base_median - 1 if base_median > 0 else (math.inf if cur_median > 0 else 0.0)
    )
    test = significantly_worse(base, cur, worse="higher", alpha=tol.alpha)
    small = cur_median - base_median <= MEMORY_SLACK_BYTES
    failed = test.significant and more > tol.memory and not small
    why = _change(more, "more", "less") + f", {test.describe()}"
    if test.significant and more > tol.memory and small:
        why += f", but under {MEMORY_SLACK_BYTES >> 20} MiB in all (allocator noise)"
    return replace(row, status=FAIL if failed else PASS, why=why)


def _db(value: float | None) -> str:
    return "-" if value is None else "inf dB" if math.isinf(value) else f"{value:.2f} dB"


def _quality(
    current: RatioResult,
    baseline: RatioResult | None,
    tol: Tolerances,
    applies: bool,
    notes: list[str],
) -> list[Row]:
    psnr_base = baseline.psnr if baseline is not None else None
    ssim_base = baseline.ssim if baseline is not None else None
    psnr = Row("PSNR", _db(current.psnr), _db(psnr_base), f"{tol.psnr:g} dB lower", NOT_MEASURED)
    ssim = Row("SSIM", _fmt(current.ssim), _fmt(ssim_base), f"{tol.ssim:g} lower", NOT_MEASURED)
    if not applies:
        why = "does not apply to this model (random weights)"
        return [
            replace(psnr, status=NOT_APPLICABLE, why=why),
            replace(ssim, status=NOT_APPLICABLE, why=why),
        ]
    rows = []
    for row, cur, base, allowed in (
        (psnr, current.psnr, psnr_base, tol.psnr),
        (ssim, current.ssim, ssim_base, tol.ssim),
    ):
        if cur is None:
            rows.append(row)
        elif row.metric == "PSNR" and cur >= IDENTICAL_PSNR and current.ratio > 0:
            rows.append(replace(row, status=FAIL, why=IDENTICAL_WHY.format(ratio=current.ratio)))
        elif baseline is None or base is None:
            rows.append(replace(row, status=NEW, why="no baseline yet"))
        else:
            rows.append(_quality_row(row, cur, base, allowed, notes))
    return rows


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _quality_row(row: Row, cur: float, base: float, allowed: float, notes: list[str]) -> Row:
    identical_base = identical_now = False
    if row.metric == "PSNR":
        # Identical images have PSNR inf, and float noise (a GPU kernel's summation order)
        # gives 90 or 120 dB: all of that is "identical", so PSNR is capped before comparing.
        identical_base, identical_now = base >= IDENTICAL_PSNR, cur >= IDENTICAL_PSNR
        base, cur = min(base, IDENTICAL_PSNR), min(cur, IDENTICAL_PSNR)
    if identical_now and not identical_base:
        notes.append(
            f"{row.metric}: merged images are now identical to the unmerged ones; "
            "is token merging still applied?"
        )
    drop = base - cur
    unit = " dB" if row.metric == "PSNR" else ""
    if drop <= allowed:
        return replace(row, status=PASS, why=f"{-drop:+.3g}{unit}" if drop else "unchanged")
    if identical_base:
        # Merging used to leave the images untouched (often: the patch was a no-op); that it
        # changes them now is a change in behaviour, so it fails until baselines are re-saved.
        why = (
            "the baseline's merged images were identical to the unmerged ones, now they differ "
            "(re-save baselines if merging now works as intended)"
        )
    else:
        why = f"{drop:.3g}{unit} lower than the baseline"
    return replace(row, status=FAIL, why=why)
