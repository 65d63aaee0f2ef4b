"""Plain records that flow from measurement to verdict to report.

They hold only JSON-friendly values so that pytest-xdist workers can send them to the
controller through `workeroutput`, and `report.json` can be written from them as they are.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# Verdict values, in the order a reader cares about them.
FAIL = "fail"
NEW = "new"  # measured, but there is no baseline to compare with
PASS = "pass"
# Too noisy to tell pass from fail: a slowdown beyond the tolerance may hide in the interval.
INCONCLUSIVE = "inconclusive"
NOT_APPLICABLE = "n/a"  # e.g. quality of random weights
NOT_MERGEABLE = "not mergeable"  # the ratio is above what the model or sx, sy allow
VERDICTS = (FAIL, INCONCLUSIVE, NEW, PASS, NOT_APPLICABLE, NOT_MERGEABLE)

# How peak memory was measured (RatioResult.memory_method).
# CUDA's peak allocated bytes above those allocated when the call started (not the absolute
# peak, weights included); a baseline of the older absolute peak is not compared with it.
MEMORY_CUDA = "cuda peak growth"
MEMORY_RSS = "peak RSS growth"
NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class RatioResult:
    """Everything measured for one model at one merge ratio, and what was decided."""

    model: str  # the model's key (see pipelines.ModelSpec.key)
    ratio: float
    device: str  # the device key, e.g. "cpu" or "cuda-nvidia-h200"
    # Seconds per image, one sample per round; time_base[i] and time_tome[i] were measured
    # back to back in round i (interleaved), so their ratio is a paired sample.
    time_base: tuple[float, ...] = ()
    time_tome: tuple[float, ...] = ()
    # The same calls by both clocks (seconds per image): wall time, and the timing thread's
    # CPU time; empty when not recorded. A merged path that waits shows in wall / CPU.
    wall_base: tuple[float, ...] = ()
    wall_tome: tuple[float, ...] = ()
    cpu_base: tuple[float, ...] = ()
    cpu_tome: tuple[float, ...] = ()
    speedup: float | None = None  # median of the paired ratios time_base / time_tome
    speedup_ci: tuple[float, float] | None = None  # 95% interval of that median
    memory_base: int | None = None  # peak bytes of one call; None: not measured
    memory_tome: int | None = None
    memory_method: str = "not measured"  # e.g. "cuda peak growth", "peak RSS growth"
    # Peak bytes of each round's call (memory_base/memory_tome are their medians), so a
    # later run compares sample against sample; empty when not measured.
    memory_base_samples: tuple[int, ...] = ()
    memory_tome_samples: tuple[int, ...] = ()
    psnr: float | None = None  # dB against the unmerged image, math.inf when identical
    ssim: float | None = None  # None: not applicable (random weights) or not measured
    # Seeded random weights: PSNR and SSIM measure sensitivity to a merge, not image quality.
    random_weights: bool = False
    verdict: str = NEW
    reasons: tuple[str, ...] = ()  # one line per failed or notable check
    patched_layers: int = 0
    image_base: ImageThumb | None = None  # first image, unmerged, for the report grid
    image_tome: ImageThumb | None = None
    method: str = "tome"  # "tome" (token merging) or "todo" (key/value downsampling)
    # (check, status) per verdict row, e.g. ("speedup", "pass"), ("PSNR", "n/a"); a baseline
    # that could not be used is ("baseline", "missing" | "fingerprint mismatch" | "corrupt").
    checks: tuple[tuple[str, str], ...] = ()
    # (name, downsample, tokens in, tokens out) of each merged layer on the last merged call.
    merged_layers: tuple[tuple[str, int, int, int], ...] = ()

    @property
    def time_per_image(self) -> float | None:
        """Median seconds per merged image."""
        return _median(self.time_tome)

    @property
    def time_per_image_base(self) -> float | None:
        return _median(self.time_base)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("psnr", "ssim"):
            data[key] = float_to_json(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RatioResult:
        kwargs = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        for key in (
            "time_base",
            "time_tome",
            "wall_base",
            "wall_tome",
            "cpu_base",
            "cpu_tome",
            "memory_base_samples",
            "memory_tome_samples",
            "reasons",
        ):
            kwargs[key] = tuple(kwargs.get(key, ()))
        kwargs["checks"] = tuple(tuple(pair) for pair in kwargs.get("checks", ()))
        kwargs["merged_layers"] = tuple(tuple(row) for row in kwargs.get("merged_layers", ()))
        if kwargs.get("speedup_ci") is not None:
            kwargs["speedup_ci"] = tuple(kwargs["speedup_ci"])
        for key in ("psnr", "ssim"):
            kwargs[key] = float_from_json(kwargs.get(key))
        for key in ("image_base", "image_tome"):
            if kwargs.get(key) is not None:
                kwargs[key] = ImageThumb(**kwargs[key])
        return cls(**kwargs)


THUMB_MAX_SIDE = 128  # pixels: enough for the report's grid, small through xdist


@dataclass(frozen=True)
class ImageThumb:
    """A small RGB image as base64 PNG text: a few kB through JSON and execnet, not pixel lists."""

    height: int
    width: int
    png: str = field(repr=False)  # base64 of the PNG bytes

    @classmethod
    def from_array(cls, image: Any, max_side: int = THUMB_MAX_SIDE) -> ImageThumb:
        """From an [H, W, 3] image (floats in [0, 1] or uint8), downscaled to `max_side`."""
        import base64
        import io

        import numpy as np
        from PIL import Image

        array = np.asarray(image)
        if array.dtype != np.uint8:
            array = np.clip(array.astype(np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        picture = Image.fromarray(array, "RGB")
        if max(picture.size) > max_side:
            picture.thumbnail((max_side, max_side), Image.Resampling.BOX)
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG", optimize=True)
        text = base64.b64encode(buffer.getvalue()).decode("ascii")
        return cls(height=picture.height, width=picture.width, png=text)

    def to_array(self) -> Any:
        """The uint8 [height, width, 3] pixels; ValueError when the PNG does not match."""
        import base64
        import io

        import numpy as np
        from PIL import Image

        try:
            with Image.open(io.BytesIO(base64.b64decode(self.png, validate=True))) as picture:
                array = np.asarray(picture.convert("RGB"))
        except (ValueError, OSError) as exc:
            raise ValueError(f"image thumbnail is not a base64 PNG: {exc}") from None
        if array.shape != (self.height, self.width, 3):
            raise ValueError(
                f"image thumbnail is {array.shape[1]}x{array.shape[0]}, "
                f"expected {self.width}x{self.height}"
            )
        return array


@dataclass(frozen=True)
class Headroom:
    """How much of a denoiser (UNet or transformer) forward the merged layers take, and what
    that allows."""

    model: str
    share: float  # fraction of one forward's time spent inside the patched layers
    layers: int  # how many layers were timed

    @property
    def amdahl_bound(self) -> float:
        """The speedup if the patched layers cost nothing: 1 / (1 - share)."""
        return math.inf if self.share >= 1 else 1.0 / (1.0 - self.share)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "amdahl_bound": float_to_json(self.amdahl_bound)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Headroom:
        return cls(model=data["model"], share=data["share"], layers=data["layers"])


def float_to_json(value: float | None) -> float | str | None:
    """JSON has no infinity: write it as the string "inf" (PSNR of identical images)."""
    if value is None or math.isfinite(value):
        return value
    return "inf" if value > 0 else "-inf"


def float_from_json(value: float | str | None) -> float | None:
    if isinstance(value, str):
        return float(value)
    return value


def _median(values: tuple[float, ...]) -> float | None:
    return statistics.median(values) if values else None
