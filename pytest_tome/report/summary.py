"""The gate's report as text: the terminal tables and report.md (files.py writes them out).

Everything here is a pure function of the result records (`results.RatioResult`,
`results.Headroom`) and a plain settings dict, so it can be tested on made-up results and
re-run on a saved report.json.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from pytest_tome.gate.measure.plan import TOME_CELLS, tome_cell
from pytest_tome.gate.results import (
    FAIL,
    INCONCLUSIVE,
    NOT_MERGEABLE,
    VERDICTS,
    Headroom,
    RatioResult,
)
from pytest_tome.report.layers import merged_layers_markdown, merged_levels_lines

COLUMNS = ("ratio", "time per image", "speedup [95% CI]", "peak memory", "PSNR", "SSIM", "verdict")
NUMERIC_COLUMNS = {"ratio"}  # right-aligned in both the terminal and markdown
ABSENT = "-"  # a cell that has no meaning for the row (a ratio that cannot be merged)


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
    from pytest_tome.gate.decide.speed import coverage_text
    from pytest_tome.gate.decide.stats import paired_speedup

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
        format_psnr(result.psnr) + _random(result),
        format_ssim(result.ssim) + _random(result),
        result.verdict,
    )


RANDOM_WEIGHTS = " (random weights)"


def _random(result: RatioResult) -> str:
    """Beside a quality number of random weights: a sensitivity, not image quality."""
    return RANDOM_WEIGHTS if result.random_weights and result.psnr is not None else ""


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
        cell = tome_cell(result.ratio) if result.method == "tome" else None
        if cell and cell > TOME_CELLS[0] and result.verdict != NOT_MERGEABLE:
            notes.append(
                f"ratio {ratio_label(result)}: merged in {cell}x{cell} cells "
                f"(2x2 allow at most 0.75)"
            )
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
        lines.extend(merged_levels_lines(rows))
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
        lines += merged_layers_markdown(rows)
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{title}]({path})\n" for title, path in figures]
        if any(path == "quality.png" for _, path in figures):
            lines += thesis_trend(results)
    if settings:
        lines += ["<details><summary>Settings</summary>", "", "| setting | value |", "|---|---|"]
        lines += [f"| {k} | {_md_escape(_setting_text(v))} |" for k, v in settings.items()]
        lines += ["", "</details>", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


THESIS_TREND = (
    "The thesis (CelebA-HQ, 200 steps) found PSNR and SSIM falling steeply, it says "
    "exponentially, as the ratio grows; it could measure that only on SD 1.5, because tomesd "
    "merged nothing on its pixel DDPM and latent LDM."
)


def thesis_trend(results: Sequence[RatioResult]) -> list[str]:
    """Beside the quality figure: each trained model's curve in words, next to the thesis's."""
    lines = []
    for model, rows, _ in _by_model(results, ()):
        points = [
            r
            for r in rows
            if r.method == "tome" and not r.random_weights and r.psnr is not None
            and math.isfinite(r.psnr) and r.ssim is not None
        ]  # fmt: skip
        if len(points) >= 2:
            low, high = points[0], points[-1]
            lines.append(
                f"- {model}: PSNR {low.psnr:.1f} dB at ratio {low.ratio:g} to {high.psnr:.1f} dB "
                f"at {high.ratio:g}; SSIM {low.ssim:.3f} to {high.ssim:.3f}"
            )
    if not lines:
        return []
    return [f"_{THESIS_TREND} Here, on models trained on faces:_", "", *lines, ""]
