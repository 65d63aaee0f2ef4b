"""Time per image and PSNR of tiny-dit / tiny-pixart, and the headroom of the DiT/PixArt presets.

    python scripts/measure_transformers.py tiny-dit tiny-pixart
    python scripts/measure_transformers.py arch:dit-xl-2-256 arch:pixart-alpha-512

Embedded pipelines: 4 steps, 1 image, ratios 0, 0.3 and 0.5 interleaved (7 rounds, median),
PSNR against ratio 0. Presets: the share of one transformer forward (batch 2) in the layers
ToMe merges, its Amdahl bound, and that forward unpatched and at ratio 0.5. One CPU thread.
"""

from __future__ import annotations

import statistics
import sys
import time
import types

import torch

from pytest_tome.engine import apply_tome
from pytest_tome.gate.measure.headroom import measure_headroom
from pytest_tome.gate.measure.pipeline_calls import denoiser_forward, generate, merged_parts
from pytest_tome.gate.measure.quality import image_quality
from pytest_tome.models.embedded import build_embedded
from pytest_tome.models.presets import preset_unet

RATIOS = (0.0, 0.3, 0.5)


def embedded(name: str) -> None:
    pipe = build_embedded(name)
    pipe.set_progress_bar_config(disable=True)
    times: dict[float, list[float]] = {r: [] for r in RATIOS}
    images = {}
    for round_ in range(7):
        for ratio in RATIOS if round_ % 2 == 0 else RATIOS[::-1]:
            start = time.perf_counter()
            images[ratio] = generate(pipe, ratio, steps=4, seed=0, images=1)
            times[ratio].append(time.perf_counter() - start)
    base = statistics.median(times[0.0])
    for ratio in RATIOS:
        median = statistics.median(times[ratio])
        psnr = image_quality(images[0.0], images[ratio]).psnr if ratio else float("inf")
        print(f"{name} r={ratio}: {median * 1e3:.0f} ms/image, x{base / median:.2f}, {psnr:.1f} dB")


def preset(name: str) -> None:
    model = preset_unet(name).eval()
    forward = denoiser_forward(types.SimpleNamespace(unet=None, transformer=model))
    patch = apply_tome(model, 0.5, seed=0)
    parts = merged_parts(patch)
    patch.remove()
    headroom = measure_headroom(name, parts, forward, repeats=3)
    print(f"{name}: share {headroom.share:.1%}, Amdahl bound x{headroom.amdahl_bound:.2f}")
    times: dict[float, list[float]] = {0.0: [], 0.5: []}
    for round_ in range(3):
        for ratio in (0.0, 0.5) if round_ % 2 == 0 else (0.5, 0.0):
            patch = apply_tome(model, ratio, seed=0)
            start = time.perf_counter()
            forward()
            times[ratio].append(time.perf_counter() - start)
            patch.remove()
    base, merged = (statistics.median(times[r]) for r in (0.0, 0.5))
    print(f"{name}: forward {base:.1f} s, at r=0.5 {merged:.1f} s (x{base / merged:.2f})")


if __name__ == "__main__":
    torch.set_num_threads(1)
    for entry in sys.argv[1:]:
        (preset if entry.startswith("arch:") else embedded)(entry)
