"""PSNR and SSIM of the face models under merging: the curve, innocent variation, a planted bug.

    python scripts/face_quality.py [--images 8] [--steps 4]

For each face model and ratio: the quality of merged images against the unmerged ones (the
gate's measure), the spread of that quality when only the merge's random choice of destination
tokens changes (seeds 0-4: an innocent change to the engine), and the quality with a planted
merge bug (unmerge writes every token one position off, as in tests/test_gate_cycle.py). The quality
tolerances (1 dB, 0.02) must sit above the innocent spread and below the bug's drop.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytest_tome.engine import matching, tome_applied
from pytest_tome.gate.measure.pipeline_calls import generate, run_pipeline
from pytest_tome.gate.measure.plan import tome_args
from pytest_tome.gate.measure.quality import image_quality
from pytest_tome.models.embedded import build_embedded
from pytest_tome.models.faces.shipped import FACE_MODELS

RATIOS = (0.1, 0.3, 0.5, 0.7, 0.9)
SEEDS = range(5)


_unmerge = matching.TokenMerge.unmerge


def _shifted_unmerge(self, x):  # the planted bug, as in tests/test_gate_cycle.py
    return _unmerge(self, x).roll(1, dims=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--models", default=",".join(FACE_MODELS))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    run = {"steps": args.steps, "seed": 0, "images": args.images}
    print(
        "model       ratio  PSNR dB  SSIM   | merge seeds 0-4: PSNR range, SSIM range | bug: PSNR, SSIM"
    )
    print("(* in the gate's larger cells: sx = sy = 4 at 0.9)")
    for name in args.models.split(","):
        pipe = build_embedded(name)
        pipe.set_progress_bar_config(disable=True)
        reference = generate(pipe, 0.0, **run)
        for ratio in RATIOS:
            # the gate's cells: 2x2 keeps one token in 4, so 0.75 is its most; 0.9 needs 4x4
            cells = {k: v for k, v in tome_args(ratio).items() if k in ("sx", "sy")}
            by_seed = []
            for merge_seed in SEEDS:  # the image's noise stays seed 0; only the merge's changes
                with tome_applied(pipe, ratio, seed=merge_seed, **cells):
                    by_seed.append(image_quality(reference, run_pipeline(pipe, **run)))
            psnr = [q.psnr for q in by_seed]
            ssim = [q.ssim for q in by_seed]
            matching.TokenMerge.unmerge = _shifted_unmerge
            try:
                bug = image_quality(reference, generate(pipe, ratio, **run, **cells))
            finally:
                matching.TokenMerge.unmerge = _unmerge
            print(
                f"{name:<11} {ratio:5.1f}{'*' if cells['sx'] > 2 else ' '} {psnr[0]:7.2f}  {ssim[0]:.4f} | "
                f"{min(psnr):.2f}-{max(psnr):.2f} ({max(psnr) - min(psnr):.2f} dB), "
                f"{min(ssim):.4f}-{max(ssim):.4f} ({max(ssim) - min(ssim):.4f}) | "
                f"{bug.psnr:.2f} ({bug.psnr - statistics.median(psnr):+.2f}), "
                f"{bug.ssim:.4f} ({bug.ssim - statistics.median(ssim):+.4f})"
            )


if __name__ == "__main__":
    main()
