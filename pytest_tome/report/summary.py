"""The gate's report: terminal tables, report.json, report.md, plots and the GitHub job summary.

Everything here is a pure function of the result records (`results.RatioResult`,
`results.Headroom`) and a plain settings dict, so it can be tested on made-up results and
re-run on a saved report.json.

report.json holds every measurement (raw per-round samples included), the headroom and the
settings, but not the images: `image_base` / `image_tome` are written as null, because a
sweep's thumbnails would make the file megabytes of pixel lists. images.png shows them.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pytest_tome import atomic
from pytest_tome.gate.results import (
    FAIL,
    INCONCLUSIVE,
    NOT_MERGEABLE,
    VERDICTS,
    Headroom,
    RatioResult,
    float_to_json,
)

REPORT_FORMAT = "pytest-tome report"
REPORT_VERSION = 1
COLUMNS = ("ratio", "time per image", "speedup [95% CI]", "peak memory", "PSNR", "SSIM", "verdict")
NUMERIC_COLUMNS = {"ratio"}  # right-aligned in both the terminal and markdown
ABSENT = "-"  # a cell that has no meaning for the row (a ratio that cannot be merged)


class ReportError(Exception):
    """The report cannot be written where asked; the message names the path and why."""


# --- formatting one cell ------------------------------------------------------------------


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "not measured"
    if seconds < 0.01:
        return f"{seconds * 1000:.2f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def format_speedup(result: RatioResult) -> str:
    if result.speedup is None:
        return "not measured"
    text = f"{result.speedup:.2f}x"
    if result.speedup_ci is not None:
        low, high = result.speedup_ci
        text += f" [{low:.2f}, {high:.2f}]{_coverage(result)}"
    return text


def _coverage(result: RatioResult) -> str:
    """The interval's real coverage where it is not the 95% the column names (few rounds)."""
    if len(result.time_base) < 2 or len(result.time_base) != len(result.time_tome):
        return ""
    from pytest_tome.gate.speed import coverage_text
    from pytest_tome.gate.stats import paired_speedup

    return coverage_text(paired_speedup(result.time_base, result.time_tome).confidence)


def format_memory(result: RatioResult) -> str:
    if result.memory_tome is None:
        return "not measured"
    text = f"{result.memory_tome / 2**20:.0f} MiB"
    if result.memory_base is not None:
        text += f" (base {result.memory_base / 2**20:.0f} MiB)"
    return text


def format_psnr(psnr: float | None) -> str:
    if psnr is None:
        return "n/a"
    if math.isinf(psnr):
        return "inf"
    return f"{psnr:.1f} dB"


def format_ssim(ssim: float | None) -> str:
    return "n/a" if ssim is None else f"{ssim:.3f}"


def format_share(share: float) -> str:
    percent = share * 100
    if percent >= 10 or percent == 0:
        return f"{percent:.0f}%"
    return f"{percent:.1f}%" if percent >= 1 else f"{percent:.2f}%"


def headroom_line(headroom: Headroom) -> str:
    """One sentence: how much of a forward ToMe can touch, and the speedup that allows."""
    if headroom.layers == 0:
        return "ToMe patches no layer of this model: nothing to speed up (bound 1.00x, Amdahl)"
    bound = headroom.amdahl_bound
    bound_text = "unbounded" if math.isinf(bound) else f"{bound:.2f}x"
    return (
        f"patched layers take {format_share(headroom.share)} of a denoiser forward: "
        f"speedup bound {bound_text} (Amdahl)"
    )


def row_cells(result: RatioResult) -> tuple[str, ...]:
    """The table cells of one result, in `COLUMNS` order."""
    if result.verdict == NOT_MERGEABLE:
        return (ratio_label(result), *[ABSENT] * 5, result.verdict)
    base = result.time_per_image_base
    time_text = format_seconds(result.time_per_image)
    if base is not None:
        time_text += f" (base {format_seconds(base)})"
    return (
        ratio_label(result),
        time_text,
        format_speedup(result),
        format_memory(result),
        format_psnr(result.psnr),
        format_ssim(result.ssim),
        result.verdict,
    )


def ratio_label(result: RatioResult) -> str:
    """The ratio cell: `0.5` for ToMe, `todo 0.75` for another method, so rows stay apart."""
    return f"{result.ratio:g}" if result.method == "tome" else f"{result.method} {result.ratio:g}"


def method_order(result: RatioResult) -> tuple[bool, str, float]:
    """Rows of a model: ToMe's first, then each other method, each by ratio."""
    return (result.method != "tome", result.method, result.ratio)


# --- grouping ------------------------------------------------------------------------------


def _by_model(
    results: Sequence[RatioResult], headroom: Sequence[Headroom]
) -> list[tuple[str, list[RatioResult], Headroom | None]]:
    """(model, its results sorted by ratio, its headroom), models in first-seen order."""
    rows: dict[str, list[RatioResult]] = {}
    for result in results:
        rows.setdefault(result.model, []).append(result)
    rooms = {room.model: room for room in headroom}
    models = list(dict.fromkeys([*rows, *rooms]))
    return [(m, sorted(rows.get(m, []), key=method_order), rooms.get(m)) for m in models]


def _title(model: str, rows: Sequence[RatioResult]) -> str:
    devices = ", ".join(dict.fromkeys(r.device for r in rows))
    layers = max((r.patched_layers for r in rows), default=0)
    parts = [devices] if devices else []
    if rows:
        parts.append(f"{layers} patched layer{'s' if layers != 1 else ''}")
    return f"{model} ({'; '.join(parts)})" if parts else model


def _notes(rows: Sequence[RatioResult]) -> list[str]:
    """What a reader needs under a table: how memory was measured, why a row failed."""
    notes = []
    methods = sorted({r.memory_method for r in rows if r.memory_tome is not None})
    if methods:
        notes.append(f"peak memory: {', '.join(methods)}")
    for result in rows:
        notes.extend(f"ratio {ratio_label(result)}: {reason}" for reason in result.reasons)
    return notes


def verdict_counts(results: Iterable[RatioResult]) -> dict[str, int]:
    counts = {verdict: 0 for verdict in VERDICTS}
    for result in results:
        counts[result.verdict] = counts.get(result.verdict, 0) + 1
    return {verdict: n for verdict, n in counts.items() if n}


# --- terminal ------------------------------------------------------------------------------


def _aligned(table: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for row in table:
        cells = [
            cell.rjust(width) if COLUMNS[i] in NUMERIC_COLUMNS else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def summary_lines(results: Sequence[RatioResult], headroom: Sequence[Headroom]) -> list[str]:
    """Plain-text tables for the terminal: per model a title, a row per ratio, its headroom."""
    lines: list[str] = []
    for model, rows, room in _by_model(results, headroom):
        if lines:
            lines.append("")
        lines.append(_title(model, rows))
        if rows:
            lines.extend(_aligned([COLUMNS, *(row_cells(r) for r in rows)]))
        lines.extend(f"  {note}" for note in _notes(rows))
        if room is not None:
            lines.append(headroom_line(room))
    return lines


# --- markdown ------------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(rows: Sequence[RatioResult]) -> list[str]:
    align = ["---:" if c in NUMERIC_COLUMNS else "---" for c in COLUMNS]
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(align) + "|"]
    for result in rows:
        cells = [_md_escape(c) for c in row_cells(result)]
        if result.verdict in (FAIL, INCONCLUSIVE):
            cells[-1] = f"**{cells[-1]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _setting_text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_setting_text(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_setting_text(v) for v in value)
    return str(value)


def report_markdown(
    results: Sequence[RatioResult],
    headroom: Sequence[Headroom],
    settings: dict[str, Any],
    *,
    figures: Sequence[tuple[str, str]] = (),
) -> str:
    """The report as GitHub-flavoured markdown; `figures` are (title, relative path) pairs."""
    counts = verdict_counts(results)
    groups = _by_model(results, headroom)
    lines = ["# pytest-tome report", ""]
    tally = ", ".join(f"{n} {verdict}" for verdict, n in counts.items()) or "no results"
    lines += [f"{len(groups)} model(s), {len(results)} ratio result(s): {tally}.", ""]
    for model, rows, room in groups:
        lines += [f"## {_md_escape(_title(model, rows))}", ""]
        if rows:
            lines += [*_md_table(rows), ""]
        notes = _notes(rows)
        if notes:
            lines += [*(f"- {_md_escape(note)}" for note in notes), ""]
        if room is not None:
            lines += [f"_{headroom_line(room)}_", ""]
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{title}]({path})\n" for title, path in figures]
    if settings:
        lines += ["<details><summary>Settings</summary>", "", "| setting | value |", "|---|---|"]
        lines += [f"| {k} | {_md_escape(_setting_text(v))} |" for k, v in settings.items()]
        lines += ["", "</details>", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


# --- files ---------------------------------------------------------------------------------


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
