"""The report's figures as PNG bytes: speed against ratio, quality against ratio, an image grid.

They follow the thesis's figures 5.1/6.1 (time and speedup), 5.2 (PSNR, SSIM) and 5.3 (images
of one seed). Figures are drawn on matplotlib's Agg canvas directly, never through pyplot, so
nothing opens a window and no global figure state is touched; the PNG carries no software
version, so the same results give the same bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pytest_tome.gate.results import NOT_MERGEABLE, Headroom, RatioResult
from pytest_tome.report.bound_labels import draw_bound, label_bounds

# Okabe & Ito's colour-blind-safe palette, and a marker each, so lines differ in grey too.
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
NOTE_COLOR = "#555555"
GRID_DPI = 110  # the grid is wide: about 170 pixels a cell keeps the file small
STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.35,
    "grid.linestyle": "-",
    "legend.frameon": False,
}


def subtitle(settings: dict[str, Any]) -> str:
    """A short line of the settings that explain the numbers: device, dtype, steps, rounds."""
    parts = []
    for key in ("device", "dtype"):
        if settings.get(key):
            parts.append(str(settings[key]))
    for key in ("steps", "rounds", "images"):
        value = settings.get(key)
        if value not in (None, ""):
            parts.append(f"{value} {key[:-1] if value == 1 else key}")
    if settings.get("seed") is not None:
        parts.append(f"seed {settings['seed']}")
    return ", ".join(parts)


def _style(index: int) -> dict[str, Any]:
    return {"color": COLORS[index % len(COLORS)], "marker": MARKERS[index % len(MARKERS)]}


def _groups(results: Sequence[RatioResult]) -> dict[str, list[RatioResult]]:
    """One series per model and method ("tiny-sd", "tiny-sd (todo)"), each by ratio."""
    groups: dict[str, list[RatioResult]] = {}
    for result in results:
        name = result.model if result.method == "tome" else f"{result.model} ({result.method})"
        groups.setdefault(name, []).append(result)
    return {model: sorted(rows, key=lambda r: r.ratio) for model, rows in groups.items()}


def _png(fig: Figure, dpi: float = 150) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def _not_mergeable_note(groups: dict[str, list[RatioResult]]) -> list[str]:
    notes = []
    for model, rows in groups.items():
        ratios = [f"{r.ratio:g}" for r in rows if r.verdict == NOT_MERGEABLE]
        if ratios:
            notes.append(f"{model}: ratio {', '.join(ratios)} not mergeable (left out)")
    return notes


REFERENCE_LABELS = ("1.0x (no gain)", "Amdahl bound")


def _finish(fig: Figure, title: str, sub: str, notes: Sequence[str], legend_axes: Axes) -> None:
    """Title, subtitle, a shared legend under the panels and the notes under that.

    Sizes are in inches, so the plot area keeps its height whatever the notes add.
    """
    handles, labels = legend_axes.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i] in REFERENCE_LABELS)
    ncol = min(len(labels), 5) or 1
    legend_in = 0.27 * math.ceil(len(labels) / ncol)
    notes_in = 0.17 * len(notes) + 0.1 if notes else 0.0
    plot_in = 4.2
    top_in, xlabel_in = 0.95, 0.6
    height = top_in + plot_in + xlabel_in + legend_in + notes_in + 0.1
    fig.set_figheight(height)
    fig.suptitle(
        title, fontsize=13, fontweight="bold", x=0.01, y=1 - 0.1 / height, ha="left", va="top"
    )
    if sub:
        fig.text(0.01, 1 - 0.42 / height, sub, fontsize=9, color=NOTE_COLOR, ha="left", va="top")
    if notes:
        fig.text(
            0.01,
            0.1 / height,
            "\n".join(notes),
            fontsize=8.5,
            color=NOTE_COLOR,
            va="bottom",
            linespacing=1.5,
        )
    if labels:
        fig.legend(
            [handles[i] for i in order],
            [labels[i] for i in order],
            loc="lower center",
            ncol=ncol,
            bbox_to_anchor=(0.5, (0.1 + notes_in) / height),
        )
    fig.subplots_adjust(
        left=0.07,
        right=0.98,
        wspace=0.22,
        top=1 - top_in / height,
        bottom=(0.1 + notes_in + legend_in + xlabel_in) / height,
    )


def _ratio_axis(ax: Axes, ratios: Sequence[float]) -> None:
    ax.set_xlabel("merge ratio")
    ax.set_xticks(sorted(set(ratios)))
    ax.set_xticklabels([f"{r:g}" for r in sorted(set(ratios))])
    ax.set_xlim(min(ratios) - 0.04, max(ratios) + 0.04)


def _draw_time(ax: Axes, model: str, rows: Sequence[RatioResult], style: dict) -> list[float]:
    """Median time per merged image against ratio, starting from the unmerged time at 0."""
    xs = [r.ratio for r in rows]
    ys = [r.time_per_image or 0.0 for r in rows]
    base_samples = [t for r in rows for t in r.time_base]
    if base_samples:
        base = float(np.median(base_samples))
        xs, ys = [0.0, *xs], [base, *ys]
        ax.axhline(base, color=style["color"], lw=0.8, ls=(0, (1, 3)), alpha=0.7)
    ax.plot(xs, ys, label=model, lw=2, ms=6, **style)
    return ys


def _draw_speedup(ax: Axes, model: str, rows: Sequence[RatioResult], style: dict) -> None:
    """Speedup against ratio, its 95% interval as error bars over a light band."""
    rows = [r for r in rows if r.speedup is not None]
    if not rows:
        return
    xs = [r.ratio for r in rows]
    ys = np.array([r.speedup for r in rows], dtype=float)
    lows = np.array([r.speedup_ci[0] if r.speedup_ci else r.speedup for r in rows], dtype=float)
    highs = np.array([r.speedup_ci[1] if r.speedup_ci else r.speedup for r in rows], dtype=float)
    ax.fill_between(xs, lows, highs, color=style["color"], alpha=0.12, lw=0)
    ax.errorbar(
        xs,
        ys,
        yerr=[ys - lows, highs - ys],
        label=model,
        lw=2,
        ms=6,
        capsize=4,
        capthick=1.2,
        elinewidth=1.2,
        **style,
    )


def plot_speed(
    results: Sequence[RatioResult], headroom: Sequence[Headroom], sub: str = ""
) -> bytes | None:
    """Time per image (ratio 0 = unmerged) and speedup with its 95% interval, per model."""
    groups = {
        m: [r for r in rows if r.verdict != NOT_MERGEABLE and r.time_tome]
        for m, rows in _groups(results).items()
    }
    if not any(groups.values()):
        return None
    bounds = {
        room.model: room.amdahl_bound
        for room in headroom
        if math.isfinite(room.amdahl_bound) and room.amdahl_bound > 1.0
    }
    with rc_context(STYLE):
        fig = Figure(figsize=(11, 5.2))
        ax_time, ax_speed = fig.subplots(1, 2)
        times: list[float] = []
        highs = [
            r.speedup_ci[1] if r.speedup_ci else r.speedup
            for rows in groups.values()
            for r in rows
            if r.speedup is not None
        ]
        top = 1.6 * max(highs, default=1.0)  # bounds above this would squash the curves
        off_scale = 0
        in_scale: list[tuple[float, str]] = []
        for index, (model, rows) in enumerate(groups.items()):
            if rows:
                style = _style(index)
                times += _draw_time(ax_time, model, rows, style)
                _draw_speedup(ax_speed, model, rows, style)
                if model in bounds:
                    draw_bound(ax_speed, bounds[model], style["color"], top=top, slot=off_scale)
                    off_scale += bounds[model] > top
                    if bounds[model] <= top:
                        in_scale.append((bounds[model], style["color"]))
        ax_speed.axhline(1.0, color="#333333", ls="--", lw=1.2, label="1.0x (no gain)")
        if bounds:
            ax_speed.plot([], [], color=NOTE_COLOR, ls=":", lw=1.6, label="Amdahl bound")
        ax_time.set_title("Time per image (median; ratio 0 = unmerged)")
        ax_time.set_ylabel("seconds per image")
        positive = [t for t in times if t > 0]
        if positive and max(positive) / min(positive) > 20:
            ax_time.set_yscale("log")
        else:
            ax_time.set_ylim(bottom=0)
        ax_speed.set_title("Speedup over unmerged (95% interval)")
        ax_speed.set_ylabel("speedup (x)")
        ratios = [0.0, *(r.ratio for rows in groups.values() for r in rows)]
        for ax in (ax_time, ax_speed):
            _ratio_axis(ax, ratios)
        notes = [
            f"{room.model}: ToMe patches no layer, nothing to speed up"
            for room in headroom
            if room.layers == 0
        ]
        notes += _not_mergeable_note(_groups(results))
        _finish(fig, "Token merging: speed", sub, notes, ax_speed)
        label_bounds(ax_speed, in_scale, off_scale)  # needs the final axes size and limits
        return _png(fig)


def _psnr_ceiling(rows: Sequence[RatioResult]) -> float:
    finite = [r.psnr for r in rows if r.psnr is not None and math.isfinite(r.psnr)]
    return (max(finite) + 5.0) if finite else 60.0


def plot_quality(results: Sequence[RatioResult], sub: str = "") -> bytes | None:
    """PSNR and SSIM of each merged image against the unmerged one, per model."""
    groups = _groups(results)
    usable = {
        m: [
            r
            for r in rows
            if r.verdict != NOT_MERGEABLE and (r.psnr is not None or r.ssim is not None)
        ]
        for m, rows in groups.items()
    }
    if not any(usable.values()):
        return None
    notes = [f"{m}: quality n/a (left out)" for m, rows in usable.items() if not rows]
    notes += _not_mergeable_note(groups)
    with rc_context(STYLE):
        fig = Figure(figsize=(11, 5.2))
        ax_psnr, ax_ssim = fig.subplots(1, 2)
        ceiling = _psnr_ceiling([r for rows in usable.values() for r in rows])
        ratios: list[float] = []
        any_inf = False
        for index, (model, rows) in enumerate(usable.items()):
            if not rows:
                continue
            style = _style(index)
            ratios += [r.ratio for r in rows]
            psnr = [(r.ratio, r.psnr) for r in rows if r.psnr is not None]
            ys = [ceiling if math.isinf(p) else p for _, p in psnr]
            label = f"{model} (random weights)" if rows[0].random_weights else model
            ax_psnr.plot([x for x, _ in psnr], ys, label=label, lw=2, ms=6, **style)
            for x, p in psnr:
                if math.isinf(p):
                    any_inf = True
                    ax_psnr.plot(x, ceiling, marker="^", ms=10, color=style["color"], ls="none")
            ssim = [(r.ratio, r.ssim) for r in rows if r.ssim is not None]
            ax_ssim.plot(
                [x for x, _ in ssim], [s for _, s in ssim], label=label, lw=2, ms=6, **style
            )
        if any_inf:
            ax_psnr.axhline(ceiling, color=NOTE_COLOR, lw=0.8, ls="--")
            ax_psnr.annotate(
                "identical (PSNR = inf)",
                xy=(1.0, ceiling),
                xytext=(-4, 3),
                xycoords=("axes fraction", "data"),
                textcoords="offset points",
                ha="right",
                fontsize=8,
                color=NOTE_COLOR,
            )
        ax_psnr.set_title("PSNR against the unmerged image")
        ax_psnr.set_ylabel("PSNR (dB, higher is closer)")
        ax_ssim.set_title("SSIM against the unmerged image")
        ax_ssim.set_ylabel("SSIM (1 = identical)")
        lowest = min((r.ssim for rows in groups.values() for r in rows if r.ssim is not None),
                     default=0.0)  # fmt: skip
        # Zoomed to the data: near-identical images would otherwise all sit flat on 1.0.
        ax_ssim.set_ylim(max(0.0, lowest - 0.25 * (1.0 - lowest) - 0.005), 1.0 + 0.005)
        for ax in (ax_psnr, ax_ssim):
            _ratio_axis(ax, ratios)
        _finish(fig, "Token merging: image quality", sub, notes, ax_psnr)
        return _png(fig)
