"""A gate test's figures as JUnit XML properties (`--junitxml`), one name per figure.

They go into `item.user_properties` (what `record_property` does), which pytest copies into
each test report; pytest-xdist ships those reports to the controller, whose junitxml writes
them, so the properties come out the same with and without `-n`. GitLab, Jenkins and Azure
DevOps show them per test. Names are `tome.<figure>`; units are in the name (s, bytes, dB).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pytest_tome.gate.results import RatioResult

PREFIX = "tome."
# RatioResult.checks' metric names -> the property suffix of their verdict.
CHECK_NAMES = {
    "speedup": "speedup",
    "peak memory": "memory",
    "PSNR": "psnr",
    "SSIM": "ssim",
    "baseline": "baseline",
}


def _number(value: float | None) -> str | None:
    """A figure as text: 6 significant digits, `inf` for identical images, None: absent."""
    if value is None:
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.6g}"


def gate_properties(result: RatioResult) -> list[tuple[str, str]]:
    """(name, value) pairs of one ratio's result; figures not measured are left out."""
    low, high = result.speedup_ci if result.speedup_ci is not None else (None, None)
    figures = {
        "model": result.model,
        "method": result.method,
        "ratio": f"{result.ratio:g}",
        "device": result.device,
        "speedup": _number(result.speedup),
        "speedup_ci_low": _number(low),
        "speedup_ci_high": _number(high),
        "time_per_image_unmerged_s": _number(result.time_per_image_base),
        "time_per_image_merged_s": _number(result.time_per_image),
        "rounds": str(len(result.time_tome)) if result.time_tome else None,
        "peak_memory_unmerged_bytes": _integer(result.memory_base),
        "peak_memory_merged_bytes": _integer(result.memory_tome),
        "peak_memory_method": result.memory_method if result.memory_tome is not None else None,
        "psnr_db": _number(result.psnr),
        "ssim": _number(result.ssim),
        # PSNR/SSIM of random weights measure sensitivity, not image quality: say so beside them
        "random_weights": "true" if result.random_weights and result.psnr is not None else None,
        "verdict": result.verdict,
    }
    for check, status in result.checks:
        figures[f"verdict.{CHECK_NAMES.get(check, check)}"] = status
    return [(PREFIX + name, value) for name, value in figures.items() if value is not None]


def _integer(value: int | None) -> str | None:
    return None if value is None else str(int(value))


def record(user_properties: list[tuple[str, object]], results: Sequence[RatioResult]) -> None:
    """Append the properties of a test's results; a test that checked several ratios gets
    its later ones with the ratio in the name (`tome.r0.3.speedup`), so none is lost."""
    for index, result in enumerate(results):
        for name, value in gate_properties(result):
            if index:
                name = f"{PREFIX}r{result.ratio:g}.{name[len(PREFIX) :]}"
            user_properties.append((name, value))
