"""Train faces-ddpm and faces-ldm on scikit-image's LFW faces and ship their weights.

    python scripts/train_faces.py            # what `make train-faces` runs (about 30 minutes)
    python scripts/train_faces.py --quick    # a few steps, to a scratch folder, to try the script

Each model trains on one CPU thread, the two side by side, seeded: the same seed and torch
build give the same weights. Writes the weights (safetensors) into the package, and a loss
curve and a sample grid into docs/faces/.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_tome.models.faces import train
from pytest_tome.models.faces.shipped import WEIGHTS, save_face_model

FULL = {
    "faces-ddpm": {"unet": train.Schedule(steps=1200)},
    "faces-ldm": {
        "autoencoder": train.Schedule(steps=400, batch=16),
        "unet": train.Schedule(steps=1600),
    },
}
QUICK = {
    "faces-ddpm": {"unet": train.Schedule(steps=4, batch=4)},
    "faces-ldm": {
        "autoencoder": train.Schedule(steps=4, batch=4),
        "unet": train.Schedule(steps=4, batch=4),
    },
}
SAMPLE_STEPS = (4, 20)  # the gate's default steps, and a longer DDIM run
SAMPLES = 8


def _train_one(name: str, quick: bool, seed: int, out: str, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    plan = (QUICK if quick else FULL)[name]
    if name == "faces-ddpm":
        trained = train.train_ddpm(plan["unet"], seed)
    else:
        trained = train.train_ldm(plan["autoencoder"], plan["unet"], seed)
    info = {
        "seed": seed,
        "threads": threads,
        "schedules": {part: vars(s) for part, s in plan.items()},
        "train_seconds": round(trained.seconds, 1),
        "torch": torch.__version__,
        "final_loss": {part: sum(v[-50:]) / len(v[-50:]) for part, v in trained.losses.items()},
    }
    save_face_model(trained.pipe, name, info, Path(out))
    samples = _samples(trained.pipe, seed)
    return {"name": name, "losses": trained.losses, "info": info, "samples": samples}


def _samples(pipe, seed: int) -> dict[int, list]:
    import torch

    pipe.set_progress_bar_config(disable=True)
    samples = {}
    for steps in SAMPLE_STEPS:
        generator = torch.Generator().manual_seed(seed)
        with torch.inference_mode():
            images = pipe(
                batch_size=SAMPLES, num_inference_steps=steps, generator=generator, output_type="np"
            ).images
        samples[steps] = images.tolist()
    return samples


def _figures(results: list[dict], docs: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    docs.mkdir(parents=True, exist_ok=True)
    for r in results:  # one figure per model, so that retraining one keeps the other's
        if r.get("losses"):
            _loss_figure([(r["name"], part, v) for part, v in r["losses"].items()], docs)
    rows = [
        (f"{r['name']}, {s} steps", np.asarray(r["samples"][s]))
        for r in results
        for s in SAMPLE_STEPS
    ]
    fig, axes = plt.subplots(len(rows), SAMPLES, figsize=(SAMPLES * 1.1, len(rows) * 1.25))
    for (label, images), row in zip(rows, axes, strict=True):
        for image, ax in zip(images, row, strict=True):
            ax.imshow(image.clip(0, 1))
            ax.set_axis_off()
        row[0].set_title(label, loc="left", fontsize=8)
    fig.tight_layout()
    fig.savefig(docs / "samples.png", dpi=100)


def _loss_figure(parts: list, docs: Path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(parts), figsize=(4 * len(parts), 3))
    for ax, (name, part, losses) in zip(np.atleast_1d(axes), parts, strict=True):
        window = max(1, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(losses, alpha=0.3, lw=0.5)
        ax.plot(np.arange(window - 1, len(losses)), smooth)
        ax.set(title=f"{name} {part}", xlabel="step", ylabel="MSE loss", yscale="log")
    fig.tight_layout()
    fig.savefig(docs / f"loss-{parts[0][0]}.png", dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps into --out, to try it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=None, help=f"weights folder (default {WEIGHTS})"
    )
    parser.add_argument("--docs", type=Path, default=None, help="figures (default docs/faces)")
    parser.add_argument(
        "--samples-only", action="store_true", help="redraw samples.png from the shipped weights"
    )
    parser.add_argument("--only", choices=list(FULL), help="train one model only")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per model (default 1: bit-repeatable)"
    )
    args = parser.parse_args()
    if args.samples_only:
        from pytest_tome.models.faces.shipped import load_face_model

        results = [{"name": n, "samples": _samples(load_face_model(n), args.seed)} for n in FULL]
        _figures(results, args.docs or ROOT / "docs" / "faces")
        return
    if args.quick and args.out is None:
        parser.error("--quick writes a few-step model: give a scratch --out, not the package")
    out = args.out or WEIGHTS
    docs = args.docs or (out / "figures" if args.quick else ROOT / "docs" / "faces")
    start = time.perf_counter()
    names = [args.only] if args.only else list(FULL)
    jobs = [(name, args.quick, args.seed, str(out), args.threads) for name in names]
    with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
        results = pool.starmap(_train_one, jobs)
    _figures(results, docs)
    wall = time.perf_counter() - start
    for r in results:
        print(f"{r['name']}: {json.dumps(r['info'])}")
    print(f"trained both in {wall:.0f} s wall; weights in {out}, figures in {docs}")


if __name__ == "__main__":
    main()
