"""The report folder: report.json, report.md, the figures, and the GitHub job summary.

report.json holds every measurement (raw per-round samples included), the headroom and the
settings, but not the images: `image_base` / `image_tome` are written as null, because a
sweep's thumbnails would make the file megabytes of pixel lists. images.png shows them.
Every file is written whole or not at all (pytest_tome.atomic).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_tome import atomic
from pytest_tome.gate.results import Headroom, RatioResult, float_to_json
from pytest_tome.report.summary import report_markdown, verdict_counts

REPORT_FORMAT = "pytest-tome report"
REPORT_VERSION = 1


class ReportError(Exception):
    """The report cannot be written where asked; the message names the path and why."""


def report_json(
    results: Sequence[RatioResult], headroom: Sequence[Headroom], settings: dict[str, Any]
) -> str:
    """Strict JSON (no NaN/Infinity literals): settings, headroom and every measurement."""
    records = [{**r.to_dict(), "image_base": None, "image_tome": None} for r in results]
    data = {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "settings": settings,
        "verdicts": verdict_counts(results),
        "headroom": [room.to_dict() for room in headroom],
        "results": records,
    }
    return json.dumps(_strict(data), indent=2, allow_nan=False, default=str) + "\n"


def load_report(path: Path) -> tuple[list[RatioResult], list[Headroom], dict[str, Any]]:
    """Read a report.json back into records (images are not stored, so they come back None)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    results = [RatioResult.from_dict(item) for item in data["results"]]
    rooms = [Headroom.from_dict(item) for item in data["headroom"]]
    return results, rooms, data["settings"]


def _strict(value: Any) -> Any:
    if isinstance(value, float):
        return float_to_json(value) if not math.isnan(value) else "nan"
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def prepare_directory(directory: Path) -> Path:
    """Create the report folder; raise ReportError naming it when that is impossible."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ReportError(f"cannot write the report to {str(directory)!r}: it is not a folder")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(
            f"cannot create the report folder {str(directory)!r}: {exc.strerror or exc}"
        ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ReportError(f"cannot write the report to {str(directory)!r}: permission denied")
    return directory


def write_atomic(path: Path, data: bytes) -> Path:
    """Write the whole file or nothing (pytest_tome.atomic); ReportError names a failure."""
    try:
        return atomic.write_atomic(path, data)
    except OSError as exc:
        raise ReportError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None


def append_step_summary(markdown: str, path: str | None = None) -> Path | None:
    """Append to GitHub's job summary (`path`, else $GITHUB_STEP_SUMMARY); None when unset."""
    target = path or os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    try:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(markdown if markdown.endswith("\n") else markdown + "\n")
    except OSError as exc:
        raise ReportError(
            f"cannot append to the GitHub step summary {target!r}: {exc.strerror or exc}"
        ) from None
    return Path(target)


def write_report(
    directory: Path,
    results: Sequence[RatioResult],
    headroom: Sequence[Headroom],
    settings: dict[str, Any],
) -> list[Path]:
    """Write report.json, the PNG figures and report.md into `directory`; return their paths.

    Also appends the tables to $GITHUB_STEP_SUMMARY when that is set (figures are not
    reachable from a job summary, so they are linked only from report.md).
    """
    from pytest_tome.report import images, plots  # matplotlib: only when a report is written

    directory = prepare_directory(directory)
    subtitle = plots.subtitle(settings)
    figures = {
        "speed.png": ("Time per image and speedup", plots.plot_speed(results, headroom, subtitle)),
        "quality.png": ("PSNR and SSIM", plots.plot_quality(results, subtitle)),
        "images.png": ("Images, same seed", images.plot_images(results, subtitle)),
    }
    written = [
        write_atomic(directory / "report.json", report_json(results, headroom, settings).encode())
    ]
    links = []
    for name, (title, png) in figures.items():
        if png is not None:
            written.append(write_atomic(directory / name, png))
            links.append((title, name))
        else:  # an earlier run's figure would pass for this run's
            (directory / name).unlink(missing_ok=True)
    markdown = report_markdown(results, headroom, settings, figures=links)
    written.append(write_atomic(directory / "report.md", markdown.encode()))
    append_step_summary(report_markdown(results, headroom, settings))
    return written
