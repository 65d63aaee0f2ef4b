"""The speed call's real error rates, by simulating whole gate runs (numpy, seeded).

Each trial is a saving run (rounds added until its median is pinned to half the tolerance)
and then a checking run whose merged calls take `slowdown` times longer, both with the
gate's own stopping rules (speed.speed_undecided) and looks. So the rates include what
optional stopping and the baseline's own noise do, not only the nominal alphas.

    python -m pytest_tome.gate.decide.error_rates
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pytest_tome.gate.decide.speed import look_schedule, speed_call, speed_undecided
from pytest_tome.gate.decide.tolerances import Tolerances
from pytest_tome.gate.results import FAIL, PASS, RatioResult


@dataclass(frozen=True)
class Noise:
    """Per-call timing noise, shaped like the gate's on a shared CPU: every call scatters
    log-normally by `spread`; a share `disturbed` of the calls is hit by an extra
    `hit` (low, high) fraction (a cache flushed, a page fault storm), on either side alike."""

    spread: float = 0.015
    disturbed: float = 0.1
    hit: tuple[float, float] = (0.1, 0.5)

    def times(self, rng: np.random.Generator, seconds: float, n: int) -> np.ndarray:
        scale = np.exp(self.spread * rng.standard_normal(n))
        hits = rng.random(n) < self.disturbed
        scale *= 1 + hits * rng.uniform(*self.hit, n)
        return seconds * scale


@dataclass(frozen=True)
class Rates:
    """Shares of trials per outcome at one true slowdown of the merged call."""

    slowdown: float
    passed: float
    failed: float
    inconclusive: float
    mean_rounds: float


def _run(
    rng: np.random.Generator,
    noise: Noise,
    speedup: float,
    baseline: RatioResult | None,
    tol: Tolerances,
    looks: tuple[int, ...],
) -> RatioResult:
    """One gate run: the configured rounds, then one more while undecided."""
    base: list[float] = []
    tome: list[float] = []
    while True:
        base.extend(noise.times(rng, 1.0, 1))
        tome.extend(noise.times(rng, 1.0 / speedup, 1))
        n = len(base)
        if n < looks[0]:
            continue
        if n >= looks[-1] or not speed_undecided(tuple(base), tuple(tome), baseline, tol, looks):
            return RatioResult("sim", 0.5, "cpu", time_base=tuple(base), time_tome=tuple(tome))


def simulate(
    slowdowns: Sequence[float],
    *,
    trials: int = 1000,
    seed: int = 0,
    noise: Noise | None = None,
    tol: Tolerances | None = None,
    rounds: int = 6,
    max_rounds: int = 20,
    speedup: float = 1.5,
) -> list[Rates]:
    """Pass, fail and inconclusive shares of `trials` gate runs per slowdown (the merged
    call's time times `slowdown`; 1 + tol.speed is the boundary), each against its own
    freshly saved baseline (default noise and tolerances: `Noise()`, `Tolerances()`)."""
    noise, tol = noise or Noise(), tol or Tolerances()
    looks = look_schedule(rounds, max_rounds)
    rng = np.random.default_rng(seed)
    rates = []
    for slowdown in slowdowns:
        verdicts, rounds_used = [], []
        for _ in range(trials):
            baseline = _run(rng, noise, speedup, None, tol, looks)
            current = _run(rng, noise, speedup / slowdown, baseline, tol, looks)
            call = speed_call(current.time_base, current.time_tome, baseline, tol, looks)
            verdicts.append(call.status)
            rounds_used.append(len(current.time_tome))
        passed, failed = verdicts.count(PASS) / trials, verdicts.count(FAIL) / trials
        rates.append(
            Rates(slowdown, passed, failed, 1 - passed - failed, float(np.mean(rounds_used)))
        )
    return rates


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spread", type=float, default=Noise.spread)
    parser.add_argument("--tol", type=float, default=Tolerances.speed)
    args = parser.parse_args(argv)
    tol = Tolerances(speed=args.tol)
    boundary = 1 + tol.speed
    cases = ((1.0, "no change"), (boundary, "the boundary"), (1.25, "1.25x slower"))
    rates = simulate(
        [s for s, _ in cases], trials=args.trials, seed=args.seed,
        noise=Noise(spread=args.spread), tol=tol,
    )  # fmt: skip
    print(f"{args.trials} simulated gate runs per case, tolerance {tol.speed:.0%}, "
          f"noise {Noise(spread=args.spread)}")  # fmt: skip
    for (_, name), rate in zip(cases, rates):
        print(
            f"merged call {rate.slowdown:.3g}x as long ({name}): pass {rate.passed:.1%}, "
            f"fail {rate.failed:.1%}, inconclusive {rate.inconclusive:.1%}, "
            f"{rate.mean_rounds:.1f} rounds on average"
        )


if __name__ == "__main__":
    main()
