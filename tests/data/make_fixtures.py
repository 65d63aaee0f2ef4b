"""Writes the checked-in decision fixtures: a baseline file and runs with known verdicts.

Run from the repository root: `python tests/data/make_fixtures.py`. The samples are synthetic
(seeded), shaped like a gate run: 7 rounds, about 1 s per unmerged image, speedup about 1.43.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pytest_tome.gate.decide.stats import paired_speedup
from pytest_tome.gate.results import RatioResult
from pytest_tome.gate.store.baselines import BaselineEntry, save_entries
from pytest_tome.gate.store.fingerprints import fingerprint

HERE = Path(__file__).parent
ROUNDS = 7
MIB = 2**20
rng = np.random.default_rng(20240601)


def rounded(values) -> tuple[float, ...]:
    return tuple(float(f"{v:.5g}") for v in values)


def unmerged(center: float = 1.0) -> tuple[float, ...]:
    return rounded(center * (1 + 0.02 * rng.standard_normal(ROUNDS)))


def merged(base, factor: float, noise: float) -> tuple[float, ...]:
    """The merged time of each round: paired with its unmerged time, so drift cancels."""
    return rounded(np.array(base) * 0.7 * factor * (1 + noise * rng.standard_normal(ROUNDS)))


def result(ratio, time_base, time_tome, *, memory=100 * MIB, psnr=30.0, ssim=0.95):
    speedup = paired_speedup(time_base, time_tome)
    return RatioResult(
        model="tiny-sd",
        ratio=ratio,
        device="cpu",
        time_base=time_base,
        time_tome=time_tome,
        speedup=speedup.median,
        speedup_ci=speedup.ci,
        memory_base=90 * MIB,
        memory_tome=memory,
        memory_base_samples=(90 * MIB,) * ROUNDS,
        memory_tome_samples=(memory,) * ROUNDS,
        memory_method="cuda max_memory_allocated",
        psnr=psnr,
        ssim=ssim,
        patched_layers=2,
    )


def write_baseline() -> None:
    measured_with = fingerprint(
        steps=3,
        seed=0,
        images=1,
        resolution=64,
        dtype="float32",
        tome={"sx": 2, "sy": 2, "max_downsample": 1},
        versions={"torch": "2.13.0", "diffusers": "0.42.1", "tomesd": "0.1.3"},
    )
    base = unmerged()
    half = result(0.5, base, merged(base, 1.0, 0.01))
    zero = result(
        0.0, base, merged(base, 1 / 0.7, 0.01), memory=90 * MIB, psnr=float("inf"), ssim=1.0
    )
    folder = HERE / "baselines"
    outcome = save_entries(
        folder,
        "cpu",
        "tiny-sd",
        [BaselineEntry(half, measured_with), BaselineEntry(zero, measured_with)],
    )
    outcome.path.with_name(outcome.path.name + ".lock").unlink()


def write_run(name: str, expected: str, why: str, base=None, tome=None, **kwargs) -> None:
    base = base or unmerged(1.05)  # absolute times drift between runs; the ratio does not
    tome = tome or merged(base, 1.0, 0.02)
    doc = {"expected": expected, "why": why, "result": result(0.5, base, tome, **kwargs).to_dict()}
    (HERE / "runs" / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    write_baseline()
    (HERE / "runs").mkdir(exist_ok=True)
    write_run("no_change", "pass", "same code: 5% absolute drift between runs, 2% noise a round")
    base = unmerged(1.05)
    write_run(
        "slower_25",
        "fail",
        "merged path 25% slower: significant and above the 10% tolerance",
        base,
        merged(base, 1.25, 0.02),
    )
    scattered = (1.80, 0.95, 1.50, 1.235, 1.05, 1.45, 1.10)  # median 1.235 = 1.42 / 1.15
    base = unmerged(1.05)
    write_run(
        "slower_15_noisy",
        "inconclusive",
        "15% slower on the median, not significant, and the interval reaches far below the "
        "tolerance: too noisy to decide",
        base,
        rounded(b / r for b, r in zip(base, scattered)),
    )
    base = unmerged(1.05)
    write_run(
        "slower_3_significant",
        "pass",
        "2-3% slower and significant, but within the 10% tolerance",
        base,
        merged(base, 1.03, 0.002),
    )
    write_run(
        "quality_loss", "fail", "PSNR 2.5 dB and SSIM 0.05 below the baseline", psnr=27.5, ssim=0.90
    )
    write_run(
        "memory_up_25",
        "fail",
        "merged peak memory 25% above the baseline in every round",
        memory=125 * MIB,
    )
    write_run(
        "memory_up_5",
        "pass",
        "merged peak memory 5% above the baseline: within tolerance",
        memory=105 * MIB,
    )


if __name__ == "__main__":
    main()
