"""Image quality of merged images against unmerged ones: PSNR and SSIM (scikit-image).

Both images of a pair come from the same seed, so any difference is what merging changed.
Images are channel-last; every input is brought to float64 in [0, 1] first, so the metrics
get one explicit `data_range` (1.0) whatever the input dtype, and uint8 and float inputs of
the same picture score the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

_CHANNELS = (1, 3, 4)  # grayscale with a channel axis, RGB, RGBA
_DEFAULT_WIN = 7  # scikit-image's default SSIM window
_MIN_SIDE = 3  # a 1-pixel window has no variance, so SSIM is undefined below 3x3


@dataclass(frozen=True)
class Quality:
    """PSNR (dB, of the MSE pooled over all images) and mean SSIM of the merged images
    against their unmerged twins."""

    psnr: float  # of the pooled MSE; math.inf only when every image is identical
    ssim: float
    psnr_per_image: tuple[float, ...]
    ssim_per_image: tuple[float, ...]
    win_size: int  # the SSIM window used

    @property
    def identical(self) -> bool:
        return all(math.isinf(p) for p in self.psnr_per_image)


def as_batch(images: Any, name: str = "images") -> np.ndarray:
    """Images as float64 (N, H, W, C) in [0, 1].

    Accepts an array-like or a sequence of them (PIL images, arrays, CPU tensors) shaped
    (H, W), (N, H, W), (H, W, C) or (N, H, W, C) with C in 1, 3, 4; dtype uint8 or float
    in [0, 1]. A 3-D array whose last axis is 1, 3 or 4 long is read as one image with
    channels, any other 3-D array as a stack of grayscale images.
    """
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError(f"{name} is empty")
        images = np.stack([np.asarray(image) for image in images])
    array = np.asarray(images)
    if array.dtype == np.uint8:
        array = array.astype(np.float64) / 255.0
    elif np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
        if array.size and not np.all(np.isfinite(array)):
            raise ValueError(f"{name} holds NaN or infinite values")
        if array.size and (array.min() < 0.0 or array.max() > 1.0):
            raise ValueError(
                f"{name} is float with values in [{array.min():g}, {array.max():g}]; "
                "float images must lie in [0, 1] (or pass uint8 in [0, 255])"
            )
    else:
        raise ValueError(f"{name} has dtype {array.dtype}; expected uint8 or float in [0, 1]")
    if array.ndim == 2:
        array = array[None, :, :, None]
    elif array.ndim == 3:
        array = array[None] if array.shape[-1] in _CHANNELS else array[..., None]
    elif array.ndim != 4 or array.shape[-1] not in _CHANNELS:
        raise ValueError(
            f"{name} has shape {array.shape}; expected (H, W), (N, H, W), (H, W, C) or "
            f"(N, H, W, C) with C in {_CHANNELS}"
        )
    if 0 in array.shape:
        raise ValueError(f"{name} has an empty axis: shape {array.shape}")
    return array


def ssim_window(height: int, width: int) -> int:
    """scikit-image's default window 7, or the largest odd size that fits a smaller image.

    The window must be odd and no larger than the image; 3 is the smallest with a variance.
    """
    side = min(height, width)
    if side < _MIN_SIDE:
        raise ValueError(
            f"SSIM needs images of at least {_MIN_SIDE}x{_MIN_SIDE} pixels, got {height}x{width}"
        )
    return min(_DEFAULT_WIN, side if side % 2 else side - 1)


def image_quality(reference: Any, merged: Any) -> Quality:
    """PSNR and SSIM of the merged images against the references with the same index.

    PSNR is that of the mean squared error pooled over all images (not a mean of per-image
    PSNRs): an image left identical (PSNR inf) cannot hide a loss in the others, and the
    result is inf only when every image is identical. SSIM is the mean of the images' SSIM.
    `psnr_per_image` keeps each image's own PSNR (inf where identical).
    """
    ref = as_batch(reference, "reference images")
    out = as_batch(merged, "merged images")
    if ref.shape != out.shape:
        raise ValueError(
            f"reference images have shape {ref.shape} but merged images {out.shape}; "
            "compare images made with the same size, count and channels"
        )
    win = ssim_window(ref.shape[1], ref.shape[2])
    psnrs: list[float] = []
    ssims: list[float] = []
    for a, b in zip(ref, out):
        identical = np.array_equal(a, b)
        psnrs.append(
            math.inf if identical else float(peak_signal_noise_ratio(a, b, data_range=1.0))
        )
        ssims.append(
            1.0
            if identical
            else float(structural_similarity(a, b, data_range=1.0, channel_axis=-1, win_size=win))
        )
    pooled = (
        math.inf
        if np.array_equal(ref, out)
        else float(peak_signal_noise_ratio(ref, out, data_range=1.0))
    )
    return Quality(
        psnr=pooled,
        ssim=float(np.mean(ssims)),
        psnr_per_image=tuple(psnrs),
        ssim_per_image=tuple(ssims),
        win_size=win,
    )
